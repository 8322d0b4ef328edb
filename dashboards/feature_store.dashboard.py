"""Feature store health: freshness, Redis round trips, memory."""

from monitoring.grafana import dashboard, timeseries

dashboard = dashboard(
    "fraudstream-feature-store",
    "fraudstream: feature store",
    [
        timeseries(
            "Newest event folded in (event time)",
            [
                ("max(fraudstream_feature_newest_event_timestamp_seconds)", "newest event"),
            ],
            unit="dateTimeAsIso",
        ),
        timeseries(
            "Freshness: wall clock minus newest event",
            [
                ("time() - max(fraudstream_feature_newest_event_timestamp_seconds)", "lag"),
            ],
            unit="s",
        ),
        timeseries(
            "Redis round trips p50 / p99, by operation",
            [
                (
                    "histogram_quantile(0.5, sum by (le, op) "
                    "(rate(fraudstream_feature_store_seconds_bucket[5m])))",
                    "p50 {{op}}",
                ),
                (
                    "histogram_quantile(0.99, sum by (le, op) "
                    "(rate(fraudstream_feature_store_seconds_bucket[5m])))",
                    "p99 {{op}}",
                ),
            ],
            unit="s",
        ),
        timeseries(
            "Redis memory", [("max(fraudstream_redis_used_memory_bytes)", "used")], unit="bytes"
        ),
        timeseries("Redis keys", [("max(fraudstream_redis_keys)", "keys")]),
        timeseries(
            "Too-late transactions",
            [
                ('sum(rate(fraudstream_dead_letters_total{reason="too_late"}[5m]))', "too late/s"),
            ],
            unit="reqps",
        ),
    ],
)
