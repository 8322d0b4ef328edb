"""Model quality: prequential AUC, AP, card precision@100 per version, champion vs challengers."""

from monitoring.grafana import dashboard, timeseries


def quality(metric: str, window: str = "window") -> str:
    return f'fraudstream_model_quality{{metric="{metric}", window="{window}"}}'


LEGEND = "{{role}} {{model}} v{{version}}"
_LABEL_DELAY_RATE = "sum by (le) (rate(fraudstream_label_delay_seconds_bucket[30m]))"

dashboard = dashboard(
    "fraudstream-model-quality",
    "fraudstream: model quality",
    [
        timeseries(
            "Average precision (recent labels)",
            [(quality("average_precision"), LEGEND)],
            unit="percentunit",
        ),
        timeseries("ROC AUC (recent labels)", [(quality("roc_auc"), LEGEND)], unit="percentunit"),
        timeseries(
            "Card precision@100 per day",
            [(quality("card_precision_at_k"), LEGEND)],
            unit="percentunit",
        ),
        timeseries(
            "Precision and recall at the threshold",
            [
                (quality("precision"), "precision " + LEGEND),
                (quality("recall"), "recall " + LEGEND),
            ],
            unit="percentunit",
        ),
        timeseries("Expected cost per transaction", [(quality("expected_cost"), LEGEND)]),
        timeseries(
            "Average precision since start",
            [(quality("average_precision", "all"), LEGEND)],
            unit="percentunit",
        ),
        timeseries(
            "Champion version",
            [
                ("fraudstream_model_version", "worker {{instance_name}}"),
                ("fraudstream_api_model_version", "api {{instance_name}}"),
            ],
        ),
        timeseries(
            "Label delay (p50, p90)",
            [
                (f"histogram_quantile({q}, {_LABEL_DELAY_RATE})", f"p{round(q * 100)}")
                for q in (0.5, 0.9)
            ],
            unit="s",
        ),
    ],
)
