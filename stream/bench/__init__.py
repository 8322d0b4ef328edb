"""``fraudstream bench``: benchmarks against the real servers, one module per suite, each
with its baseline run in the same invocation (docs/performance.md).

- :mod:`~stream.bench.features`: the feature path on Redis (and the in-memory store);
- :mod:`~stream.bench.cluster`: the same on a Redis Cluster, against one Redis;
- :mod:`~stream.bench.data`: the simulator and the Kafka replay;
- :mod:`~stream.bench.drift`: the detectors on every scenario and on steady seeds;
- :mod:`~stream.bench.labels`: labels learned one by one against in batches;
- :mod:`~stream.bench.stream`: Kafka in, score out, label learned, by layout (with
  :mod:`~stream.bench.workers` and :mod:`~stream.bench.latency`);
- :mod:`~stream.bench.api`: the scoring API against a bare FastAPI endpoint.
"""
