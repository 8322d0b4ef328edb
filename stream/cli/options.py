"""What the commands share: the session (log level, settings read once) and the checks of
numeric arguments.

Examples
--------
>>> positive(2.5), positive(None)
(2.5, None)
>>> positive(0)  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
BadParameter: 0 must be greater than 0
>>> at_least_zero(0.0), cluster_masters(3)
(0.0, 3)
>>> cluster_masters(2)  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
BadParameter: 2: a Redis Cluster here has 3 to 16 masters
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import typer
from tqdm import tqdm

from stream.settings import Settings, load_settings

N = TypeVar("N", int, float)


class InvalidSettings(Exception):
    """The environment's settings are not valid (the message names the field)."""


@dataclass
class Session:
    """What every command gets through ``typer.Context.obj``: the log level, and the
    settings, read once when a command first needs them."""

    log_level: str = "info"
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings()
            except Exception as exc:  # pydantic names the field and the reason
                raise InvalidSettings(str(exc)) from exc
        return self._settings


def session(ctx: typer.Context) -> Session:
    """The session of the command running in ``ctx``."""
    found = ctx.find_object(Session)
    if found is None:  # a command invoked on its own, without the root callback
        found = ctx.ensure_object(Session)
    return found


@contextmanager
def progress_bar(unit: str) -> Iterator[tqdm]:
    """A progress bar on stderr (count, rate, time left), closed on the way out; its
    ``report(done, total, seconds)`` is what a replay or a scorecard calls as it goes, its
    ``write`` prints a line above it."""
    bar = tqdm(
        unit=f" {unit}", unit_scale=True, file=sys.stderr, dynamic_ncols=True, mininterval=0.5
    )

    def report(done: int, total: int, seconds: float) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    bar.report = report
    try:
        yield bar
    finally:
        bar.close()


def positive(value: N | None) -> N | None:
    """A number greater than 0 (or not given)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value} must be greater than 0")
    return value


def at_least_zero(value: N | None) -> N | None:
    """A number of at least 0 (a day, hours, a count of days), or not given."""
    if value is not None and not value >= 0:
        raise typer.BadParameter(f"{value} must be 0 or more")
    return value


def cluster_masters(value: int | None) -> int | None:
    """``--redis-cluster``: a number of masters, 3 to 16."""
    if value is not None and not 3 <= value <= 16:
        raise typer.BadParameter(f"{value}: a Redis Cluster here has 3 to 16 masters")
    return value
