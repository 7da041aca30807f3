"""`apprenti adapters list|show|activate|rollback|discard`: the adapter registry."""

from __future__ import annotations

import typer
from rich.table import Table

from bot.cli.common import console, fail, print_json, runtime

adapters_app = typer.Typer(help="The adapter registry: versions, activation, rollback.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print one JSON document.")
ACTOR = typer.Option("cli", "--actor", help="Who asks, for the audit log.")


def _registry(ctx):
    from finetune.registry import Registry

    rt = runtime(ctx)
    return Registry(rt.engine, rt.settings.adapters_dir)


def _done(change, as_json: bool, text: str):
    if as_json:
        print_json(change.as_dict())
    else:
        console.print(text)


@adapters_app.command("list")
def list_cmd(ctx: typer.Context, track: str | None = typer.Option(None, "--track"), as_json: bool = JSON):
    """List adapter versions."""
    from finetune.registry import describe

    rows = [describe(a) for a in _registry(ctx).list(track)]
    if as_json:
        print_json({"adapters": rows})
        return
    table = Table("name", "status", "examples", "gate", "activated", "folder")
    for r in rows:
        gate = r["gate"]["passed"] if r["gate"] else None
        table.add_row(
            r["name"],
            r["status"],
            str(r["examples"]),
            {True: "passed", False: "failed"}.get(gate, "–"),
            str(r["activated_at"] or ""),
            "ok" if r["folder_present"] else "MISSING",
        )
    console.print(table)


@adapters_app.command("show")
def show_cmd(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="track/vN, or vN in --track."),
    track: str = typer.Option("default", "--track"),
    as_json: bool = JSON,
):
    """An adapter's card: data, hyper-parameters, metrics, verdict, who activated it."""
    from finetune.registry import RegistryError

    registry = _registry(ctx)
    try:
        card = registry.card(registry.resolve(version, track).name)
    except RegistryError as exc:
        fail(str(exc), 2)
    if as_json:
        print_json(card)
        return
    for key in (
        "name",
        "status",
        "base_model",
        "dataset_fingerprint",
        "examples",
        "parent_version",
        "triggered_by",
        "activated_by",
        "activated_at",
        "folder_present",
    ):
        console.print(f"{key}: {card.get(key)}")
    verdict = (card.get("metrics") or {}).get("verdict")
    if verdict:
        console.print("gate: " + ("passed" if verdict["passed"] else "failed"))
        for reason in verdict["reasons"]:
            console.print(f"  - {reason}")


@adapters_app.command("activate")
def activate_cmd(
    ctx: typer.Context,
    version: str = typer.Argument(...),
    track: str = typer.Option("default", "--track"),
    actor: str = ACTOR,
    as_json: bool = JSON,
):
    """Put a version in service (the current one is retired)."""
    from finetune.registry import RegistryError

    registry = _registry(ctx)
    try:
        name = registry.resolve(version, track).name
    except RegistryError as exc:
        fail(str(exc), 2)
    try:
        change = registry.activate(name, actor)
    except RegistryError as exc:
        fail(str(exc))
    _done(
        change,
        as_json,
        f"{change.active} is now active for {change.track} (was {change.previous or 'base model'}).",
    )


@adapters_app.command("rollback")
def rollback_cmd(
    ctx: typer.Context,
    version: str | None = typer.Argument(None, help="Default: the previous active."),
    track: str = typer.Option("default", "--track"),
    actor: str = ACTOR,
    as_json: bool = JSON,
):
    """Go back to the previous active version (or VERSION); with none, the base model serves the track."""
    from finetune.registry import RegistryError

    registry = _registry(ctx)
    if version and "/" in version:
        track = version.split("/", 1)[0]
    try:
        change = registry.rollback(track, actor, to=version)
    except RegistryError as exc:
        fail(str(exc))
    _done(
        change, as_json, f"{change.track}: now {change.active or 'the base model'} (was {change.previous})."
    )


@adapters_app.command("discard")
def discard_cmd(
    ctx: typer.Context,
    version: str = typer.Argument(...),
    track: str = typer.Option("default", "--track"),
    actor: str = ACTOR,
    as_json: bool = JSON,
):
    """Reject a candidate and delete its weights (its card stays)."""
    from finetune.registry import RegistryError

    registry = _registry(ctx)
    try:
        name = registry.resolve(version, track).name
        change = registry.discard(name, actor)
    except RegistryError as exc:
        fail(str(exc))
    _done(change, as_json, f"{name} discarded.")


def register(app: typer.Typer) -> None:
    app.add_typer(adapters_app, name="adapters")
