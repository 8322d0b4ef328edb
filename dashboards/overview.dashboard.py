"""Overview: is the pipeline flowing? Throughput, latency, errors, dead letters, the API."""

from monitoring.grafana import dashboard, timeseries

dashboard = dashboard(
    "fraudstream-overview",
    "fraudstream: overview",
    [
        timeseries(
            "Records in, by topic",
            [
                ("sum by (topic) (rate(fraudstream_events_in_total[1m]))", "{{topic}}"),
            ],
            unit="reqps",
        ),
        timeseries(
            "Scores out",
            [
                ("sum(rate(fraudstream_scores_out_total[1m]))", "scores/s"),
            ],
            unit="reqps",
        ),
        timeseries(
            "Scoring and learning latency (p50, p99)",
            [
                (
                    "histogram_quantile(0.5, sum by (le, stage) "
                    "(rate(fraudstream_processing_seconds_bucket[5m])))",
                    "p50 {{stage}}",
                ),
                (
                    "histogram_quantile(0.99, sum by (le, stage) "
                    "(rate(fraudstream_processing_seconds_bucket[5m])))",
                    "p99 {{stage}}",
                ),
            ],
            unit="s",
        ),
        timeseries(
            "Errors, by stage",
            [
                ("sum by (stage) (rate(fraudstream_errors_total[5m]))", "{{stage}}"),
            ],
            unit="reqps",
        ),
        timeseries(
            "Dead letters, by reason",
            [
                (
                    "sum by (topic, reason) (rate(fraudstream_dead_letters_total[5m]))",
                    "{{topic}} {{reason}}",
                ),
            ],
            unit="reqps",
        ),
        timeseries(
            "Redeliveries recognised",
            [
                ("sum by (topic) (rate(fraudstream_duplicates_total[5m]))", "{{topic}}"),
            ],
            unit="reqps",
        ),
        timeseries(
            "API requests, by status",
            [
                ("sum by (status) (rate(fraudstream_api_requests_total[1m]))", "{{status}}"),
            ],
            unit="reqps",
        ),
        timeseries(
            "API latency p99, by route",
            [
                (
                    "histogram_quantile(0.99, sum by (le, route) "
                    "(rate(fraudstream_api_request_seconds_bucket[5m])))",
                    "{{route}}",
                ),
            ],
            unit="s",
        ),
        timeseries(
            "Labels learned",
            [
                ("sum(rate(fraudstream_labels_learned_total[5m]))", "labels/s"),
            ],
            unit="reqps",
        ),
        timeseries(
            "Labels waiting for the stream",
            [
                ("sum(fraudstream_labels_waiting)", "waiting"),
            ],
        ),
        timeseries(
            "Consumer lag, by topic",
            [
                ("sum by (topic) (fraudstream_consumer_lag)", "{{topic}}"),
            ],
        ),
        timeseries(
            "Targets up",
            [
                ('up{job=~"fraudstream-.*"}', "{{job}} {{instance_name}}"),
            ],
        ),
        timeseries(
            "Active role instances (learn, monitor: 1 each)",
            [
                ("sum by (pipeline, role) (fraudstream_lease_active)", "{{pipeline}} {{role}}"),
            ],
        ),
    ],
)
