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


class JournalMismatchError(ModelError):
    """The learn journal does not hold what its writer counted: a write whose reply was
    lost, or a snapshot published meanwhile. The writer reloads from the registry.

    Parameters
    ----------
    actual
        How many entries the journal holds.
    expected
        How many entries the writer counted.
    """

    def __init__(self, actual: int, expected: int) -> None:
        super().__init__(f"the learn journal holds {actual} entries, not {expected}")
        self.actual = actual
        self.expected = expected
