"""Producers: wire schemas, a seeded simulator, and the Kafka publisher."""
