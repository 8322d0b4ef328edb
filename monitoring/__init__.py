"""Monitoring: Prometheus metrics (injected registries), and later drift detectors."""
