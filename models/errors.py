"""The one base exception of the models package, and its kinds."""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error raised by :mod:`models`."""


class UnknownModelError(ModelError):
    """A model name that the factory does not know."""


class NoModelError(ModelError):
    """No model snapshot has been published yet."""


class SnapshotIntegrityError(ModelError):
    """A snapshot whose signature is missing or does not match its bytes."""


class ChampionChangedError(ModelError):
    """The champion moved (a promote or rollback) since the learner last loaded it."""


class FencedError(ModelError):
    """This learner's lease was taken over: it may no longer write any lineage."""
