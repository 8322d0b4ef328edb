"""Flow control of the labels topic in event time.

A label is learned only once the stream (the transactions scored) has
reached the label's own time; a label consumed earlier waits in Redis
(:mod:`stream.waiting`). In a replay, or while scoring catches up, the
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
  own rule (:meth:`stream.waiting.Waiting.passed`) learns them.

The decision is pure (:class:`LabelFlow`); :func:`stream.runtime.app.create_app`
applies it to the Faust consumer. Pausing never blocks the consumer's
delivery loop (holding the learn agent instead stopped the transactions too:
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
"""

from __future__ import annotations

from collections.abc import Iterable


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
        #: The partitions paused now.
        self.paused: set[int] = set()
        self._full = False
        #: The stream time at which the scorers had every transaction in Kafka.
        self._idle_at: float | None = None
        self._last_time: float | None = None

    def consumed(self, partition: int, event_time: float) -> None:
        """A label of ``event_time`` was consumed from ``partition``."""
        if event_time > self.newest.get(partition, float("-inf")):
            self.newest[partition] = event_time

    def stalled(self, stream_time: float) -> bool:
        """Whether a partition is paused and the stream time has not moved since the last
        decision: the scorers may have taken every transaction there is."""
        return bool(self.paused) and stream_time == self._last_time \
            and stream_time != self._idle_at

    def decide(self, stream_time: float, waiting: int,
               caught_up: bool = False) -> tuple[set[int], set[int]]:
        """The partitions to pause and to resume now (each set once: the flow
        remembers what it paused). ``caught_up``: the scorers have every transaction
        that is in Kafka."""
        self._last_time = stream_time
        if caught_up:
            self._idle_at = stream_time
        idle = stream_time == self._idle_at
        if waiting >= self.waiting_max:
            self._full = True
        elif waiting < self.waiting_max // 2:
            self._full = False
        want = set(self.newest) if self._full else set() if idle else {
            partition for partition, newest in self.newest.items()
            if newest > stream_time + self.lead
            or (partition in self.paused and newest > stream_time)}
        pause, resume = want - self.paused, self.paused - want
        self.paused = want
        return pause, resume

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """``partitions`` (every one by default) left this process, or are read again from
        their committed offset: nothing is known of them."""
        for partition in list(self.newest) if partitions is None else partitions:
            self.newest.pop(partition, None)
            self.paused.discard(partition)
