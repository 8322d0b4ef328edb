"""Real servers (Kafka, Redis, Prometheus, Alertmanager) run as local processes."""

from __future__ import annotations

from stream.services.manager import LocalServices, ServiceStatus

__all__ = ["LocalServices", "ServiceStatus"]
