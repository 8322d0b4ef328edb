"""Where feature state lives in Redis: one key layout, hash-tagged by entity.

A Redis Cluster runs a command (and a script) only when all its keys hash to
one slot; the slot of a key is that of its *hash tag*, the text between its
first ``{`` and the next ``}``. So every key is tagged by the entity whose
script writes it:

- the **card side** by card (``{c:<card>}``): the card's history, and per
  transaction its scored record (``P`` marker, then ``D`` and the record);
- the **terminal side** by terminal (``{t:<terminal>}``): the window counts,
  the fraud entries, and per transaction the terminal's own applied marker
  (the window sums and fraud entries it was applied on; see
  :mod:`features.redis_cluster_store`);
- the **transaction index** (``txn:<txn>`` -> its card), for labels that do
  not name their card.

The feature-set version is in every key, so a new feature set never reads old
state. The same names are used on a single Redis, where the tags cost a few
bytes and change nothing, so a single Redis's state can be imported into a
cluster as it is (``redis-cli --cluster import``).

Examples
--------
>>> keys = KeyLayout("fs", 3)
>>> keys.card("c1"), keys.scored("c1", "t9")
('fs:v3:card:{c:c1}', 'fs:v3:scored:{c:c1}:t9')
>>> keys.term("p1"), keys.fraud("p1"), keys.applied("p1", "t9")
('fs:v3:term:{t:p1}', 'fs:v3:fraud:{t:p1}', 'fs:v3:applied:{t:p1}:t9')
>>> keys.index("t9")
'fs:v3:txn:t9'
>>> tag("fs:v3:scored:{c:c1}:t9") == tag(keys.card("c1"))
True
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
        raise ValueError("key_prefix: must not contain '{' or '}' (they would change the "
                         "keys' hash tags)")
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
        """The card's history (:func:`features.card.append`'s bytes)."""
        return f"{self.base}:card:{{c:{card_id}}}"

    def scored(self, card_id: str, txn_id: str) -> str:
        """The transaction's marker, then its saved record, beside its card."""
        return f"{self.base}:scored:{{c:{card_id}}}:{txn_id}"

    def term(self, terminal_id: str) -> str:
        """The terminal's window counts (:mod:`features.redis_lua`)."""
        return f"{self.base}:term:{{t:{terminal_id}}}"

    def fraud(self, terminal_id: str) -> str:
        """The terminal's fraud entries: transaction id -> (its time, the label's arrival)."""
        return f"{self.base}:fraud:{{t:{terminal_id}}}"

    def applied(self, terminal_id: str, txn_id: str) -> str:
        """What the transaction saw at its terminal, until its record is saved (cluster)."""
        return f"{self.base}:applied:{{t:{terminal_id}}}:{txn_id}"

    def index(self, txn_id: str) -> str:
        """The transaction's card, for a label that does not name it."""
        return f"{self.base}:txn:{txn_id}"


def models_tag(prefix: str) -> str:
    """The hash tag every model-registry key starts with (one slot: its transactions and
    scripts span snapshots, champion, journal, markers and the lease's fence).

    >>> models_tag("fs")
    '{fs:models}'
    """
    return f"{{{check_prefix(prefix)}:models}}"
