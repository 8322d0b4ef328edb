"""The worker's roles and what follows from a set of them.

``score`` (any number of instances, one consumer group on ``transactions``),
``learn`` and ``monitor`` (one active instance each, behind a lease). A
process runs a set of roles; ``all`` is the three in one process.

Examples
--------
>>> parse_roles(["all"]) == ALL
True
>>> sorted(parse_roles(["score", "monitor", "score"]))
['monitor', 'score']
>>> group_id("fs", ALL), group_id("fs", frozenset({"score"}))
('fs', 'fs-score')
>>> parse_roles(["learner"])
Traceback (most recent call last):
...
ValueError: --role: unknown role 'learner' (choose from all, score, learn, monitor)
"""

from __future__ import annotations

from collections.abc import Iterable

ROLES = ("score", "learn", "monitor")
ALL = frozenset(ROLES)
#: Roles with exactly one active instance, each behind its own lease.
SINGLE_ACTIVE = ("learn", "monitor")


def parse_roles(names: Iterable[str]) -> frozenset[str]:
    """The role set named on the command line (``all`` or any of :data:`ROLES`)."""
    roles: set[str] = set()
    for name in names:
        if name == "all":
            roles |= ALL
        elif name in ROLES:
            roles.add(name)
        else:
            raise ValueError(f"--role: unknown role {name!r} (choose from all, {', '.join(ROLES)})")
    return frozenset(roles) or ALL


def group_id(app_id: str, roles: frozenset[str]) -> str:
    """The Kafka consumer group (and Faust app id) of a process running ``roles``:
    the app id for all three, else the app id and the roles. Every instance of a
    role set shares its group; run scorers as ``--role score``."""
    return app_id if roles == ALL else "-".join([app_id, *sorted(roles)])


def scoring_group(app_id: str, roles: frozenset[str]) -> str:
    """The group that scores the transactions, as seen by a process running ``roles``."""
    return group_id(app_id, roles if "score" in roles else frozenset({"score"}))
