"""Producers: wire schemas, the simulator and its drift scenarios, datasets, Kafka replay."""
