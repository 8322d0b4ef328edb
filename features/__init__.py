"""Feature definitions (pure), the FeatureStore protocol and its stores.

This package imports nothing else of fraudstream's: models, monitoring and
the adapters build on it. :mod:`features.vector` is the entry point: the
feature names, their meanings and the one ``view``.
"""

from __future__ import annotations

from features.events import Label, Transaction
from features.vector import FEATURE_NAMES, FEATURE_SET_VERSION, FEATURES, EntityState, view

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "FEATURE_SET_VERSION",
    "EntityState",
    "Label",
    "Transaction",
    "view",
]
