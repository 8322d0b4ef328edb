"""Flow control of the labels and transactions topics in event time.

A label is learned only once the stream (the transactions scored) has
reached the label's own time; a label consumed earlier waits in Redis
(:mod:`stream.runtime.waiting`). In a replay, or while scoring catches up, the
labels topic can be read far faster than the transactions are scored, and
every label read too early costs a park and a later retry. So the learner
reads each labels partition only while it is not ahead of the stream:

- a partition whose newest consumed label is more than ``lead`` seconds of
  event time past the stream time is **paused**, and read again once the
  stream has reached that label;
- every partition is paused while ``waiting_max`` labels wait, and read
  again below half of it;
- once the scorers have taken every transaction in Kafka (``caught_up``),
  nothing is paused for being ahead until the stream time moves again:
  those labels come after the last transaction, and the waiting labels'
  own rule (:meth:`stream.runtime.waiting.Waiting.passed`) learns them.

The other way round, scoring must not run ahead of the labels either: a
transaction scored while labels that had arrived before it are still unread
in Kafka is scored by a model that has not learned them (after an outage,
or in a replay at full speed, that model can be weeks behind the stream,
and its losses page the concept-drift detectors on steady traffic). The
learner publishes its **frontier** (:meth:`LabelFlow.frontier`: the event
time up to which it has read every labels partition that still has records
in Kafka), and each scorer waits before a transaction more than a ``lead``
past it, its transactions partitions paused meanwhile (:class:`ScoreHold`).
Live, no labels partition has a backlog: there is no frontier, and no hold.
While the labels are paused because too many wait (for transactions), there
is no frontier either: the labels then wait for the scorers, never the
other way round, so the two holds never wait for each other.

The decisions are pure (:class:`LabelFlow`, :class:`ScoreHold`);
:func:`stream.runtime.app.create_app` applies them to the Faust consumer.
Pausing never blocks the consumer's delivery loop (holding the learn agent
instead stopped the transactions too:
Faust delivers every topic through one loop, so the scorer starved and the
stream time never reached the held labels).

Examples
--------
>>> flow = LabelFlow(lead=60.0, waiting_max=100)
>>> flow.consumed(0, 1_000.0); flow.consumed(1, 1_030.0)
>>> flow.decide(stream_time=980.0, waiting=3)    # 20 and 50 s ahead: within the lead
(set(), set())
>>> flow.decide(stream_time=900.0, waiting=3)    # both more than 60 s ahead
({0, 1}, set())
>>> flow.decide(stream_time=1_000.0, waiting=3)  # the stream reached partition 0's label
(set(), {0})
>>> flow.decide(stream_time=1_030.0, waiting=100)  # too many wait: everything stops
({0}, set())
>>> flow.decide(stream_time=1_100.0, waiting=60)   # still more than half
(set(), set())
>>> flow.decide(stream_time=1_100.0, waiting=49)
(set(), {0, 1})
>>> flow.consumed(0, 5_000.0)
>>> flow.decide(stream_time=1_100.0, waiting=0)
({0}, set())
>>> flow.stalled(1_100.0)   # paused, and the stream time did not move: ask the scorers
True
>>> flow.decide(stream_time=1_100.0, waiting=0, caught_up=True)  # no transaction to come
(set(), {0})
>>> flow.decide(stream_time=1_100.0, waiting=0)
(set(), set())
>>> flow.decide(stream_time=1_200.0, waiting=0)  # new transactions: paused again
({0}, set())

The frontier, over the partitions that still had records after the last one read:

>>> flow = LabelFlow(lead=60.0, waiting_max=100)
>>> flow.consumed(0, 1_000.0, behind=True); flow.consumed(1, 400.0, behind=False)
>>> flow.frontier()   # partition 1 has nothing more in Kafka: only 0 counts
1000.0
>>> flow.consumed(1, 500.0, behind=True)
>>> flow.frontier()
500.0
>>> flow.decide(stream_time=450.0, waiting=0)  # 0 is ahead of the stream: paused
({0}, set())
>>> flow.frontier()   # it was read past the stream: only 1 counts
500.0
>>> flow.decide(stream_time=300.0, waiting=0)  # (and 1 too now)
({1}, set())
>>> flow.frontier() is None
True
>>> _ = flow.decide(stream_time=1_000.0, waiting=100)  # the labels wait for transactions
>>> flow.frontier() is None
True

While the backlog of a partition is unknown (none assigned yet, or one assigned and
neither read nor found empty: the consumer is joining its group), the frontier stays at
the stream time when that began, so the scorers cannot run ahead of labels not seen yet:

>>> flow = LabelFlow(lead=60.0, waiting_max=100)
>>> flow.assign(())  # the consumer starts: nothing assigned yet
>>> _ = flow.decide(stream_time=700.0, waiting=0); flow.frontier()
700.0
>>> flow.assign({0, 1}); flow.consumed(0, 800.0, behind=True)
>>> _ = flow.decide(stream_time=750.0, waiting=0); flow.frontier()  # 1 is not known yet
700.0
>>> flow.at_end(1)
>>> _ = flow.decide(stream_time=750.0, waiting=0); flow.frontier()
800.0
>>> flow.forget({0, 1}); _ = flow.decide(stream_time=790.0, waiting=0)  # revoked
>>> flow.frontier()
790.0

A scorer waits before a transaction more than ``lead`` past the frontier; its partitions
are paused from half the lead on (no more is fetched meanwhile), read again below a quarter:

>>> hold = ScoreHold(lead=3_600.0)
>>> hold.decide(stream_time=2_500.0, frontier=1_000.0)
False
>>> hold.decide(stream_time=3_000.0, frontier=1_000.0)
True
>>> hold.decide(stream_time=3_000.0, frontier=1_500.0)  # 1,500 s past: still paused
True
>>> hold.decide(stream_time=3_000.0, frontier=2_200.0)
False
>>> hold.decide(stream_time=1_000.0, frontier=2_200.0, waiting=True)  # waits: paused
True
>>> hold.decide(stream_time=9_000.0, frontier=None)  # no labels backlog: never held
False
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable

#: The learner's published frontier expires this long after it last wrote it: a scorer
#: never holds its transactions for a learner that stopped.
FRONTIER_TTL_MS = 3_000


def frontier_key(prefix: str) -> str:
    """The Redis key of the learner's labels frontier, under the key ``prefix``."""
    return f"{prefix}:labels:frontier"


class LabelFlow:
    """Which labels partitions to read, from the stream time and the waiting labels."""

    def __init__(self, lead: float, waiting_max: int) -> None:
        if lead < 0:
            raise ValueError(f"lead: must be >= 0 seconds, got {lead}")
        if waiting_max < 2:
            raise ValueError(f"waiting_max: must be >= 2, got {waiting_max}")
        self.lead = lead
        self.waiting_max = waiting_max
        #: The newest label time consumed from each partition.
        self.newest: dict[int, float] = {}
        #: Whether each partition had more records in Kafka after the last one read.
        self.behind: dict[int, bool] = {}
        #: The partitions paused now.
        self.paused: set[int] = set()
        self._full = False
        #: The stream time at which the scorers had every transaction in Kafka.
        self._idle_at: float | None = None
        self._last_time: float | None = None
        #: The partitions this learner's consumer reads (None: no consumer tells, nothing
        #: is ever blind), and those found with nothing to read since they were assigned.
        self.assigned: set[int] | None = None
        self._at_end: set[int] = set()
        #: The stream time when the learner last did not know how far its partitions go.
        self._blind_at: float | None = None

    def consumed(self, partition: int, event_time: float, behind: bool = False) -> None:
        """A label of ``event_time`` was consumed from ``partition`` (in offset order;
        ``behind``: the partition had more records after it when it was fetched)."""
        if event_time > self.newest.get(partition, float("-inf")):
            self.newest[partition] = event_time
        self.behind[partition] = behind

    def assign(self, partitions: Iterable[int]) -> None:
        """The partitions the learner reads now (after a rebalance): until a label is read
        from each, or each is found to hold nothing more, the frontier stays where it was."""
        self.assigned = set(partitions)
        self._at_end -= self.assigned

    def at_end(self, partition: int) -> None:
        """``partition`` holds no label to read (its position is its end)."""
        self._at_end.add(partition)

    @property
    def blind(self) -> bool:
        """Whether a partition's backlog is unknown: the consumer has none assigned (it is
        joining its group), or one assigned but neither read nor found empty."""
        return self.assigned is not None and (
            not self.assigned
            or any(p not in self.newest and p not in self._at_end for p in self.assigned)
        )

    @property
    def holding_all(self) -> bool:
        """Whether every partition is paused because too many labels wait."""
        return self._full

    def frontier(self) -> float | None:
        """The event time up to which every labels partition with records still in Kafka
        has been read: transactions past it would be scored by a model that has not
        learned labels that came before them. A partition paused for being ahead of the
        stream does not count (it has been read past the stream time: reading more waits
        for the next transactions). None: no backlog, or the labels are paused because
        too many wait (they wait for the scorers then)."""
        if self._full:
            return None
        if self.blind:  # (a label may come before anything the stream has reached)
            return self._blind_at
        return min(
            (
                self.newest[p]
                for p, behind in self.behind.items()
                if behind and p not in self.paused
            ),
            default=None,
        )

    def stalled(self, stream_time: float) -> bool:
        """Whether a partition is paused and the stream time has not moved since the last
        decision: the scorers may have taken every transaction there is."""
        return bool(self.paused) and stream_time == self._last_time and stream_time != self._idle_at

    def idle(self, stream_time: float) -> bool:
        """Whether the scorers had every transaction in Kafka when the stream time last
        stood here (labels past it come after the last transaction)."""
        return stream_time == self._idle_at

    def decide(
        self, stream_time: float, waiting: int, caught_up: bool = False
    ) -> tuple[set[int], set[int]]:
        """The partitions to pause and to resume now (each set once: the flow
        remembers what it paused). ``caught_up``: the scorers have every transaction
        that is in Kafka."""
        self._last_time = stream_time
        if not self.blind:
            self._blind_at = None
        elif self._blind_at is None:
            self._blind_at = stream_time
        if caught_up:
            self._idle_at = stream_time
        idle = self.idle(stream_time)
        if waiting >= self.waiting_max:
            self._full = True
        elif waiting < self.waiting_max // 2:
            self._full = False
        want = (
            set(self.newest)
            if self._full
            else set()
            if idle
            else {
                partition
                for partition, newest in self.newest.items()
                if newest > stream_time + self.lead
                or (partition in self.paused and newest > stream_time)
            }
        )
        pause, resume = want - self.paused, self.paused - want
        self.paused = want
        return pause, resume

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """``partitions`` (every one by default) left this process, or are read again from
        their committed offset: nothing is known of them."""
        gone = (
            set(self.newest) | (self.assigned or set()) if partitions is None else set(partitions)
        )
        for partition in gone:
            self.newest.pop(partition, None)
            self.behind.pop(partition, None)
            self.paused.discard(partition)
            self._at_end.discard(partition)
        if self.assigned is not None:
            self.assigned -= gone


class ScoreHold:
    """Whether a scorer pauses its transactions partitions for the labels.

    A scorer waits before a transaction more than ``lead`` past the frontier (in
    :class:`~stream.runtime.scorer.ScoreRole`); so that no more transactions are fetched
    meanwhile (they would fill the consumer's buffers ahead of the labels it waits for),
    its partitions are paused from half the lead on, and while it waits, and read again
    below a quarter of it.
    """

    def __init__(self, lead: float) -> None:
        if lead < 0:
            raise ValueError(f"lead: must be >= 0 seconds, got {lead}")
        self.lead = lead
        #: Whether the partitions are paused now.
        self.held = False

    def decide(self, stream_time: float, frontier: float | None, waiting: bool = False) -> bool:
        """Whether the partitions should be paused now (``waiting``: the scorer is waiting
        for the labels)."""
        if frontier is None:
            self.held = False
        elif waiting:
            self.held = True
        elif self.held:
            self.held = stream_time - frontier > self.lead / 4
        else:
            self.held = stream_time - frontier > self.lead / 2
        return self.held


class PartitionAlign:
    """Which transactions partitions a scorer leaves unread for now, so that none runs
    more than ``lead`` seconds of event time ahead of the slowest partition that still
    has records in Kafka.

    A terminal is shared by cards of every partition: scored while one partition runs
    days ahead of another, its transactions see the terminal without the other
    partition's traffic of those days (and the drift detectors see features that depend
    on how the partitions were read; the end-to-end drift test's steady stream paged
    PredictionDrift so). Reading the partitions in step in event time makes a replay's
    or a catch-up's vectors those of live traffic, as the embedded run computes them.

    A partition left unread keeps its fetched records in the client (it is not paused);
    one more than ``lead`` ahead is left, and read again once within half of it. A
    partition that has records in Kafka but whose newest time has not moved for
    ``stall`` seconds (wall clock: its last records are transaction markers, or its
    reads fail) no longer holds the others back. Live, no partition has a backlog:
    nothing is left unread.

    >>> align = PartitionAlign(lead=3_600.0)
    >>> align.read(0, 10_000.0, behind=True, now=0.0); align.read(1, 12_000.0, True, 0.0)
    >>> align.skip({0, 1}, now=0.1)          # 2,000 s ahead: within the lead
    set()
    >>> align.read(1, 20_000.0, True, 0.2)   # 10,000 s ahead of partition 0
    >>> align.skip({0, 1}, now=0.3)
    {1}
    >>> align.read(0, 17_000.0, True, 0.4)   # 3,000 s: more than half the lead still
    >>> align.skip({0, 1}, now=0.5)
    {1}
    >>> align.read(0, 18_500.0, True, 0.6)   # within half the lead: read again
    >>> align.skip({0, 1}, now=0.7)
    set()
    >>> align.read(0, 30_000.0, False, 0.8)  # 0 read to its end: it holds none back ...
    >>> align.skip({0, 1}, now=0.9)          # ... and what comes on it waits for 1
    {0}

    A partition whose time stands still stops holding the others back after ``stall``
    seconds, and one revoked holds none back at once:

    >>> align = PartitionAlign(lead=3_600.0, stall=10.0)
    >>> align.read(0, 10_000.0, True, 1.0); align.read(1, 20_000.0, True, 1.0)
    >>> align.skip({0, 1}, now=1.5), align.skip({0, 1}, now=12.0)
    ({1}, set())
    >>> align.skip({1}, now=1.5)
    set()
    """

    def __init__(self, lead: float, stall: float = 10.0) -> None:
        if lead < 0:
            raise ValueError(f"lead: must be >= 0 seconds, got {lead}")
        self.lead = lead
        self.stall = stall
        #: Per partition: newest event time read, whether Kafka had more after it, and
        #: when (wall clock) its newest time last moved.
        self._newest: dict[int, float] = {}
        self._behind: dict[int, bool] = {}
        self._moved: dict[int, float] = {}
        self._left: set[int] = set()

    def read(self, partition: int, newest: float, behind: bool, now: float) -> None:
        """A batch of ``partition`` was read up to event time ``newest`` (``behind``: Kafka
        held more records after it), at wall-clock ``now`` (monotonic seconds)."""
        if newest > self._newest.get(partition, -math.inf) or partition not in self._moved:
            self._moved[partition] = now
        self._newest[partition] = max(newest, self._newest.get(partition, -math.inf))
        self._behind[partition] = behind

    def skip(self, assigned: Collection[int], now: float) -> set[int]:
        """The ``assigned`` partitions to leave unread now."""
        laggards = [
            self._newest[p]
            for p in assigned
            if self._behind.get(p) and now - self._moved[p] < self.stall
        ]
        if not self.lead or not laggards:
            self._left = set()
            return set()
        slowest = min(laggards)
        self._left = {
            p
            for p in assigned
            if p in self._newest
            and self._newest[p] > slowest + (self.lead / 2 if p in self._left else self.lead)
        }
        return set(self._left)
