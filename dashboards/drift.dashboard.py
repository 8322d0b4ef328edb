"""Drift: what moved, since when, by how much; detector alarms as annotations."""

from monitoring.grafana import annotation, dashboard, heatmap, timeseries

dashboard = dashboard(
    "fraudstream-drift",
    "fraudstream: drift",
    [
        heatmap(
            "PSI per feature",
            [("max by (feature) (fraudstream_feature_psi)", "{{feature}}")],
            description=(
                "Population stability index of each feature, recent window against "
                "the reference. Above 0.1 alarms (FeatureDrift)."
            ),
        ),
        timeseries(
            "KS statistic per feature",
            [
                ("max by (feature) (fraudstream_feature_ks)", "{{feature}}"),
            ],
        ),
        timeseries(
            "KSWIN p-value per feature (last day against the week before)",
            [
                ("min by (feature) (fraudstream_feature_kswin_p_value)", "{{feature}}"),
            ],
            description=(
                "River's KSWIN: the p-value of the KS test of each watched feature's last "
                "day against the week before. At or below drift.kswin_alpha (1e-7) it "
                "alarms (FeatureSuddenShift); watch for a feature falling by orders of "
                "magnitude."
            ),
            log_scale=True,
        ),
        timeseries(
            "Mean shift per feature (CUSUM over its threshold)",
            [
                ("max by (feature) (fraudstream_feature_mean_shift)", "{{feature}}"),
            ],
            description=(
                "A two-sided CUSUM on the mean of each watched feature over blocks of "
                "transactions, standardised by the reference, over its threshold (set by "
                "drift.ert_days). At 1 it alarms (FeatureMeanShift); it climbs for as long "
                "as the shift lasts and is capped at 2."
            ),
        ),
        timeseries(
            "Score distribution (PSI) and flagged share",
            [
                ("max(fraudstream_score_psi)", "score PSI"),
                ("max(fraudstream_score_flagged_ratio)", "flagged share"),
            ],
        ),
        timeseries(
            "Fraud rate and label delay against the reference",
            [
                ("max(fraudstream_fraud_rate_ratio)", "fraud rate ratio"),
                ("max(fraudstream_label_delay_ratio)", "label delay ratio"),
            ],
        ),
        timeseries(
            "Missed fraud incidents (scored below the threshold)",
            [
                ("max by (window) (fraudstream_missed_fraud_share)", "missed share, {{window}}"),
                ("max(fraudstream_missed_fraud_cusum)", "CUSUM / threshold"),
            ],
            description=(
                "Share of fraud incidents (a card's or a terminal's frauds within a day "
                "count once) that the champion had scored below its threshold: over the "
                "recent incidents and in the reference taken after the warm-up. The CUSUM "
                "of that share, over its threshold, alarms at 1 (MissedFraudRise). Labels "
                "come days after the frauds: read it days late."
            ),
        ),
        timeseries(
            "Held back for event-time order",
            [
                ("sum by (stream) (fraudstream_drift_held_records)", "{{stream}}"),
            ],
            description=(
                "Records the detectors wait to see until every partition that is behind "
                "has reached their event time (a worker catching up reads its partitions "
                "days apart). Back to 0 once caught up; if "
                "fraudstream_drift_released_early_total grows, raise "
                "drift.order_max_held."
            ),
        ),
        timeseries(
            "Alarms, by detector",
            [
                (
                    "sum by (detector) (increase(fraudstream_drift_alarms_total[10m]))",
                    "{{detector}}",
                ),
            ],
        ),
        timeseries(
            "Last alarm (event time)",
            [
                (
                    "max by (detector) (fraudstream_drift_last_alarm_timestamp_seconds)",
                    "{{detector}}",
                ),
            ],
            unit="dateTimeAsIso",
        ),
    ],
    annotations=[
        annotation(
            "drift alarms",
            "changes(fraudstream_drift_alarms_total[1m]) > 0",
            "{{detector}} on {{subject}}",
        ),
    ],
)
