"""Feature definitions (pure), the FeatureStore protocol and its stores.

This package imports nothing else of fraudstream's: models, monitoring and
the adapters build on it.
"""

from __future__ import annotations

from features.card import FEATURE_NAMES, FEATURE_SET_VERSION, CardState, step, view
from features.events import Label, Transaction

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_SET_VERSION",
    "CardState",
    "Label",
    "Transaction",
    "step",
    "view",
]
