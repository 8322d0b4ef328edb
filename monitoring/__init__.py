"""Monitoring: Prometheus metrics (injected registries), drift detectors and the worker's
drift monitor, Grafana dashboards and the Prometheus configuration."""
