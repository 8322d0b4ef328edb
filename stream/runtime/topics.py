"""The topics the system uses, created up front with kafka-python's admin client.

Faust does not create the topics its agents read, so the worker (and the
producer) make sure they exist before starting.
"""

from __future__ import annotations

import contextlib

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from stream.settings import Settings

TOPIC_FIELDS = (
    "transactions",
    "labels",
    "scores",
    "dead_letters",
    "drift_events",
    "scored",
    "learned",
    "predictions",
)


def topic_names(settings: Settings) -> list[str]:
    """Every topic name, with the configured prefix.

    Examples
    --------
    >>> from stream.settings import Settings, TopicSettings
    >>> topic_names(Settings(topics=TopicSettings(prefix="t1-")))
    ['t1-transactions', 't1-labels', 't1-scores', 't1-dead-letters', 't1-drift-events', \
't1-scored', 't1-learned', 't1-predictions']
    """
    return [settings.topics.name(field) for field in TOPIC_FIELDS]


def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics; return the names of those created."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        existing = set(admin.list_topics())
        wanted = [name for name in topic_names(settings) if name not in existing]
        new = [
            NewTopic(name, settings.kafka.partitions, settings.kafka.replication_factor)
            for name in wanted
        ]
        if new:
            # another process may create them at the same moment: that is fine
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
        return wanted
    finally:
        admin.close()


def remove_topics(settings: Settings) -> list[str]:
    """Delete the settings' topics that exist (a bench run's, under its own prefix); return
    their names."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        existing = set(admin.list_topics())
        doomed = [name for name in topic_names(settings) if name in existing]
        if doomed:
            with contextlib.suppress(UnknownTopicOrPartitionError):  # another run's removal
                admin.delete_topics(doomed)
        return doomed
    finally:
        admin.close()
