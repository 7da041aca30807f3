"""`apprenti forget` and `apprenti audit`: erasure and the audit log."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from bot.cli.common import EXIT_FAILED, bad_input, console, print_json, runtime


def forget(
    ctx: typer.Context,
    user: str = typer.Argument(..., help="Slack user id (U...) whose data is erased."),
    actor: str = typer.Option("cli", "--actor", help="Who asks, for the audit log."),
    retrain: bool = typer.Option(True, "--retrain/--no-retrain", help="Queue a retrain of affected tracks."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
):
    """Erase everything stored about a person: questions, corrections, votes, their review posts,
    few-shot and knowledge entries, export files; adapters trained on them never serve again."""
    from bot.erasure import erase_person

    if not user.strip():
        bad_input("USER must be a Slack user id such as U012ABCDEF")
    rt = runtime(ctx)
    result = erase_person(rt, user, actor, retrain=retrain)
    if as_json:
        print_json(result)
        if result.get("unfinished"):
            sys.exit(EXIT_FAILED)
        return
    console.print(
        f"Erased {result['interactions']} interaction(s) and {result['examples']} example(s) "
        f"of {result['user']}; the audit log now names them {result['pseudonym']}."
    )
    if result["tainted_adapters"]:
        console.print(
            f"Adapters trained on that data (never to serve again): {', '.join(result['tainted_adapters'])}"
        )
    for item in result.get("taken_out_of_service", []):
        console.print(f"Taken out of service: {item['adapter']}; now serving: {item['now']}")
    for post in result["review_posts"]:
        console.print(f"Review post {post['channel']}/{post['ts']}: {post['outcome']}")
    for export in result["exports"]:
        console.print(
            f"Export {export.get('file') or export.get('where')} ({export['at'][:19]}, by {export['by']}): "
            f"{export['outcome']}",
            markup=False,
        )
    for item in result["retrain_runs"]:
        console.print(
            f"Retrain of {item['track']}: "
            + (
                f"run #{item['run']} queued"
                if item["run"]
                else "not started (" + "; ".join(item["reasons"]) + ")"
            )
        )
    for step in result.get("unfinished", []):
        console.print(f"Not finished: {step}", markup=False)
    if result.get("unfinished"):
        sys.exit(EXIT_FAILED)


def audit(
    ctx: typer.Context,
    limit: int = typer.Option(100, "--limit", min=1, help="How many events, newest first."),
    action: str | None = typer.Option(None, "--action", help="Only this action, e.g. adapter.activate."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
):
    """Show the audit log, newest first."""
    from storage.audit import list_events

    events = list_events(runtime(ctx).engine, limit=limit, action=action)
    rows = [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "details": e.details,
        }
        for e in events
    ]
    if as_json:
        print_json({"events": rows})
        return
    table = Table("at", "actor", "action", "target", "details")
    for r in rows:
        table.add_row(r["at"][:19], r["actor"], r["action"], r["target"] or "", str(r["details"])[:80])
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("forget")(forget)
    app.command("audit")(audit)
