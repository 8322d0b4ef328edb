"""``models list|promote|rollback``: the champion's versions, and changing it (with who and
why, into the registry's audit trail)."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from stream.cli.options import positive, session

if TYPE_CHECKING:
    from models.registry import ModelRegistry
    from models.snapshots import AuditEntry

T = TypeVar("T")
Who = Annotated[str | None, typer.Option(help="who asks (default: $USER)")]
Version = Annotated[int | None, typer.Argument(metavar="VERSION", callback=positive)]
Reason = Annotated[str, typer.Option(help="why (required: it goes into the audit trail)")]


def register(app: typer.Typer) -> None:
    models = typer.Typer(help="model versions: list, promote, roll back", no_args_is_help=True)
    models.command("list", help="every version, the champion marked *, and the audit trail")(
        list_versions
    )
    models.command("promote", help="make VERSION (or --challenger NAME's model) the champion")(
        promote
    )
    models.command("rollback", help="back to the previous champion, or to VERSION")(rollback)
    app.add_typer(models, name="models")


def list_versions(ctx: typer.Context) -> int:
    async def show(registry: ModelRegistry) -> None:
        champion = await registry.champion_version()
        for meta in await registry.versions():
            mark = "*" if meta.version == champion else " "
            quality = meta.metrics or {}
            print(
                f"{mark} v{meta.version:<5} parent {meta.parent!s:<5} {meta.model_name:32s}"
                f" labels {meta.labels_learned:>8,}  feature set v{meta.feature_set_version}"
                f"  AP {quality.get('average_precision_window', float('nan')):.3f}"
                f"  ROC AUC {quality.get('roc_auc_window', float('nan')):.3f}"
            )
        for entry in await registry.audit():
            print(
                f"  {entry.at} {entry.action} v{entry.from_version} -> v{entry.to_version}"
                f" by {entry.who}: {entry.why}"
            )

    _with_registry(ctx, show)
    return 0


def promote(
    ctx: typer.Context,
    reason: Reason,
    version: Version = None,
    challenger: Annotated[
        str | None, typer.Option(help="make this challenger's current model the champion")
    ] = None,
    who: Who = None,
) -> int:
    if version is None and challenger is None:
        raise typer.BadParameter("needs a VERSION or --challenger NAME", param_hint="VERSION")

    async def change(registry: ModelRegistry) -> AuditEntry:
        author, at = who or getpass.getuser(), datetime.now(tz=UTC).isoformat()
        if challenger is not None:
            return await registry.adopt(registry.challenger(challenger), author, reason, at)
        assert version is not None
        return await registry.promote(version, author, reason, at)

    _changed(_with_registry(ctx, change))
    return 0


def rollback(ctx: typer.Context, reason: Reason, version: Version = None, who: Who = None) -> int:
    async def change(registry: ModelRegistry) -> AuditEntry:
        return await registry.rollback(
            who or getpass.getuser(), reason, datetime.now(tz=UTC).isoformat(), version
        )

    _changed(_with_registry(ctx, change))
    return 0


def _changed(entry: AuditEntry) -> None:
    print(
        f"{entry.action}: v{entry.from_version} -> v{entry.to_version} "
        f"(by {entry.who}; the worker and API follow within seconds)"
    )


def _with_registry(ctx: typer.Context, use: Callable[[ModelRegistry], Awaitable[T]]) -> T:
    """``use`` the registry of the settings' Redis, closed after."""
    from stream.wiring import build_registry, build_store

    settings = session(ctx).settings()

    async def run() -> T:
        store = build_store(settings)
        try:
            return await use(build_registry(settings, store))
        finally:
            await store.close()

    return asyncio.run(run())
