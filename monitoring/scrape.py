"""Read one sample from a process's Prometheus ``/metrics`` endpoint (benchmarks and tests
watch a worker this way, as Prometheus would)."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def read_metric(port: int, metric: str, host: str = "127.0.0.1", **labels: str) -> float | None:
    """The sample ``metric`` with ``labels`` at ``http://host:port/metrics``; None when it is
    not there or nothing answers.

    Parameters
    ----------
    port
        The process's metrics port.
    metric
        The sample's name (with its suffix: ``_total``, ``_bucket``...).
    host
        The process's host.
    **labels
        Label values the sample must have (it may have others).

    Examples
    --------
    >>> read_metric(1, "up") is None  # nothing listens on port 1
    True
    """
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None
