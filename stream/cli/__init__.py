"""``fraudstream``: the one command line (Typer), and with :mod:`stream.wiring` the only
place that wires everything.

Commands, one module each group:

- :mod:`~stream.cli.system`: ``services install|up|down|status``, ``worker``, ``api``,
  ``drift-refresh``, ``dashboards``, ``migrate-keys``;
- :mod:`~stream.cli.models`: ``models list|promote|rollback``;
- :mod:`~stream.cli.data`: ``scenarios list|describe``, ``simulate-data``, ``replay``,
  ``drift-report``;
- :mod:`~stream.cli.scorecard`: ``scorecard``; :mod:`~stream.cli.demo`: ``demo``;
- :mod:`~stream.cli.bench`: ``bench features|simulate|replay|models|drift|labels|stream|api``.

``fraudstream COMMAND --help`` describes each. Settings are read once, when a command first
needs them, and passed down. Exit status: 0 done, 1 failed (the message says why), 2 a bad
argument or setting (the message names it), 130 interrupted.

Examples
--------
>>> main(["models", "promote", "--help"])  # doctest: +ELLIPSIS
Usage: fraudstream models promote [OPTIONS] [VERSION]
...
0
>>> main(["bench", "stream", "--customers", "0"])
2
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from enum import Enum, StrEnum
from typing import Annotated, Any

import typer

from models.errors import ModelError
from stream.cli.options import InvalidSettings, Session


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def _root(
    ctx: typer.Context,
    log_level: Annotated[LogLevel, typer.Option(help="how much the command logs")] = LogLevel.info,
) -> None:
    """Streaming fraud scoring with online models and drift monitoring."""
    logging.basicConfig(
        level=log_level.value.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    ctx.obj = Session(log_level.value)


def build_app() -> typer.Typer:
    """The ``fraudstream`` command and every subcommand."""
    from stream.cli import bench, data, demo, models, scorecard, system

    app = typer.Typer(
        name="fraudstream",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for group in (system, models, data, scorecard, demo, bench):
        group.register(app)
    return app


def parse(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """The command path ``argv`` names and its parameters, parsed and checked but not run
    (for checking commands written elsewhere, e.g. in docker-compose.yml).

    >>> parse(["worker", "--role", "score"])
    (['worker'], {'role': ['score']})
    """
    command: Any = typer.main.get_command(build_app())
    ctx = command.make_context("fraudstream", list(argv))
    path: list[str] = []
    while hasattr(command, "resolve_command"):  # a group: go down to its command
        args = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        name, found, rest = command.resolve_command(ctx, args)
        path.append(name)
        command, ctx = found, found.make_context(name, rest, parent=ctx)
    params = {
        k: (
            v.value
            if isinstance(v, Enum)
            else [x.value if isinstance(x, Enum) else x for x in v]
            if isinstance(v, list)
            else v
        )
        for k, v in ctx.params.items()
    }
    return path, params


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fraudstream`` with ``argv`` (default: the process's); the exit status."""
    try:
        result = build_app()(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="fraudstream",
            standalone_mode=False,
        )
    except typer.Exit as done:  # --help, or a command's typer.Exit
        return done.exit_code
    except typer.TyperException as bad:  # a bad argument: named, with the reason
        show = getattr(bad, "show", None)
        if show is None:
            print(f"fraudstream: {bad.format_message()}", file=sys.stderr)
        else:
            show()
        return bad.exit_code
    except (KeyboardInterrupt, typer.Abort):
        return 130
    except InvalidSettings as exc:
        print(f"fraudstream: invalid settings: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, ModelError) as exc:
        print(f"fraudstream: {exc}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0
