"""Where feature state lives in Redis: one key layout, hash-tagged by entity.

A Redis Cluster runs a command (and a script) only when all its keys hash to
one slot; the slot of a key is that of its *hash tag*, the text between its
first ``{`` and the next ``}``. So every key is tagged by the entity whose
script writes it:

- the **card side** by card (``{c:<card>}``): the card's history;
- the **terminal side** by terminal (``{t:<terminal>}``): the window counts
  and the fraud entries;
- a transaction's **scored record** (``P`` marker, then ``D`` and the record).
  On one Redis it is under the transaction's id (``scored:{x:<txn>}``): the
  one apply script sees every key, so the record also claims the id and
  labels find it by id alone. On a cluster the card script must see it, so
  it is beside its card (``scored:{c:<card>}:<txn>``), and two more keys
  stand in for what the single script did at once: the id's claim
  (``txn:{x:<txn>}`` -> its card; it also finds the record for labels that
  do not name their card), and the terminal's own ``applied`` marker (see
  :mod:`features.redis_cluster_store`).

The feature-set version is in every key, so a new feature set never reads old
state. Card and terminal state has the same names on one Redis and on a
cluster.

Examples
--------
>>> keys = KeyLayout("fs", 3)
>>> keys.card("c1"), keys.term("p1"), keys.fraud("p1")
('fs:v3:card:{c:c1}', 'fs:v3:term:{t:p1}', 'fs:v3:fraud:{t:p1}')
>>> keys.scored("t9")  # one Redis
'fs:v3:scored:{x:t9}'
>>> keys.scored_by_card("c1", "t9"), keys.claim("t9"), keys.applied("p1", "t9")  # cluster
('fs:v3:scored:{c:c1}:t9', 'fs:v3:txn:{x:t9}', 'fs:v3:applied:{t:p1}:t9')
>>> tag(keys.scored_by_card("c1", "t9")), tag(keys.card("c1"))  # the card's slot, both
('c:c1', 'c:c1')
>>> KeyLayout("f{s", 3)
Traceback (most recent call last):
...
ValueError: key_prefix: must not contain '{' or '}' (they would change the keys' hash tags)
"""

from __future__ import annotations

from dataclasses import dataclass


def check_prefix(prefix: str) -> str:
    """``prefix``, if it cannot change a key's hash tag."""
    if "{" in prefix or "}" in prefix:
        raise ValueError(
            "key_prefix: must not contain '{' or '}' (they would change the keys' hash tags)"
        )
    return prefix


def tag(key: str) -> str:
    """The part of ``key`` a Redis Cluster hashes (its hash tag, else the whole key).

    >>> tag("a:{b}:c"), tag("a:{}:c"), tag("plain")
    ('b', 'a:{}:c', 'plain')
    """
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """The keys of one feature set's state under ``prefix``."""

    prefix: str
    version: int

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    @property
    def base(self) -> str:
        return f"{self.prefix}:v{self.version}"

    def card(self, card_id: str) -> str:
        """The card's history (:func:`features.card_bytes.append`'s bytes)."""
        return f"{self.base}:card:{{c:{card_id}}}"

    def scored(self, txn_id: str) -> str:
        """One Redis: the transaction's marker, then its saved record."""
        return f"{self.base}:scored:{{x:{txn_id}}}"

    def scored_by_card(self, card_id: str, txn_id: str) -> str:
        """A cluster: the transaction's marker, then its saved record, beside its card.

        Parameters
        ----------
        card_id
            The transaction's card (the key's hash tag).
        txn_id
            The transaction's id.
        """
        return f"{self.base}:scored:{{c:{card_id}}}:{txn_id}"

    def term(self, terminal_id: str) -> str:
        """The terminal's window counts (:mod:`features.redis_lua`)."""
        return f"{self.base}:term:{{t:{terminal_id}}}"

    def fraud(self, terminal_id: str) -> str:
        """The terminal's fraud entries: transaction id -> (its time, the label's arrival)."""
        return f"{self.base}:fraud:{{t:{terminal_id}}}"

    def applied(self, terminal_id: str, txn_id: str) -> str:
        """A cluster: what the transaction saw at its terminal, until its record is saved.

        Parameters
        ----------
        terminal_id
            The transaction's terminal (the key's hash tag).
        txn_id
            The transaction's id.
        """
        return f"{self.base}:applied:{{t:{terminal_id}}}:{txn_id}"

    def claim(self, txn_id: str) -> str:
        """A cluster: the card the transaction id belongs to."""
        return f"{self.base}:txn:{{x:{txn_id}}}"


def models_tag(prefix: str) -> str:
    """The hash tag every model-registry key starts with (one slot: its transactions and
    scripts span snapshots, champion, journal, markers and the lease's fence).

    >>> models_tag("fs")
    '{fs:models}'
    """
    return f"{{{check_prefix(prefix)}:models}}"
