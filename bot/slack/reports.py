"""What `/apprenti status`, `/apprenti adapters`, `/apprenti audit` and the App Home show."""

from __future__ import annotations

import logging
import re
from typing import Any

from bot import messages as text
from bot.slack.blocks import escape
from storage.adapters import active_adapters, list_adapters
from storage.audit import list_events
from storage.examples import count_examples
from storage.models import ExampleStatus
from storage.runs import list_runs

METRIC_KEYS = 4
SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


log = logging.getLogger("apprenti.slack.reports")


def who(actor: str | None) -> str:
    """A Slack user id as a mention, anything else (system, scheduler, cli) as plain text."""
    return f"<@{actor}>" if actor and SLACK_ID.match(actor) else escape(actor or "unknown")


def metrics_text(metrics: dict[str, Any] | None) -> str:
    """A few headline metrics, `name 0.812`; nested dicts (per-split results) are flattened one level."""
    flat: list[tuple[str, Any]] = []
    for key, value in (metrics or {}).items():
        if isinstance(value, dict):
            flat += [(f"{key}.{k}", v) for k, v in value.items() if isinstance(v, int | float)]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat.append((key, value))
    if not flat:
        return ""
    shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in flat[:METRIC_KEYS])
    return f" — {escape(shown)}"


def adapter_lines(engine, tracks: list[str]) -> list[str]:
    active = active_adapters(engine)
    lines = []
    for track in sorted(set(tracks) | set(active)):
        row = active.get(track)
        if row is None:
            lines.append(text.SLACK_STATUS_NO_ADAPTER.format(track=escape(track)))
        else:
            lines.append(
                text.SLACK_STATUS_ADAPTER.format(
                    track=escape(track), adapter=escape(row.name), metrics=metrics_text(row.metrics)
                )
            )
    return lines


def pending_count(engine) -> int:
    return count_examples(engine, status=ExampleStatus.pending.value)


def run_lines(engine, limit: int = 5, errors: bool = True) -> list[str]:
    """The latest runs; `errors=False` leaves out why a run failed (its log tail is for those who may
    read `/apprenti status`, not for every member's App Home)."""
    runs = list_runs(engine, limit=limit)
    if not runs:
        return [text.SLACK_STATUS_NO_RUNS]
    return [
        text.SLACK_STATUS_RUN.format(
            id=run.id,
            track=escape(run.track),
            status=run.status,
            trigger=run.trigger,
            by=f" by <@{run.triggered_by}>" if run.triggered_by and run.trigger == "admin" else "",
            when=run.created_at.strftime("%Y-%m-%d %H:%M"),
            adapter=f" → {escape(run.adapter_name)}" if run.adapter_name else "",
            error=f" — {escape(run.error[:200])}" if run.error and errors else "",
        )
        for run in runs
    ]


def indexed_sources(runtime) -> list[dict] | None:
    """When each indexed document last changed (None when the index cannot be read)."""
    try:
        return [{"indexed_at": s.indexed_at} for s in runtime.documents.sources()]
    except Exception as exc:  # noqa: BLE001 - advice without document churn beats no status at all
        log.warning("document index unavailable for the readiness advice: %s", exc)
        return None


def advice_lines(runtime) -> list[str]:
    """The readiness advice of bot/advice.py, one bullet per piece of advice, per track."""
    from bot.advice import readiness_report

    report = readiness_report(runtime.engine, runtime.settings, sources=indexed_sources(runtime))
    lines = [text.SLACK_STATUS_ADVICE]
    for track in report["tracks"]:
        rates = ", ".join(
            f"{f['adapter']} {f['up']}👍/{f['down']}👎" for f in track["feedback"] if f["up"] or f["down"]
        )
        lines.append(f"*{escape(track['track'])}*" + (f" — {rates}" if rates else ""))
        lines += [f"  • {escape(a)}" for a in track["advice"]]
    return lines


def knowledge_lines(engine, limit: int = 8) -> list[str]:
    """The documents that produced corrected answers, each with its correction, and any approved fact
    that has not reached the index (/apprenti status, the App Home, the weekly notice)."""
    from storage.knowledge import open_suspects, unindexed_entries

    lines = []
    waiting = unindexed_entries(engine)
    if waiting:
        errors = sorted({e.index_error for e in waiting if e.index_error})
        lines.append(
            text.SLACK_UNINDEXED.format(
                count=len(waiting),
                ids=", ".join(f"#{e.id}" for e in waiting[:10]),
                error=f": {escape(errors[0][:200])}" if errors else "",
            )
        )
    suspects = open_suspects(engine)
    if not suspects:
        return [*lines, text.SLACK_SUSPECTS_NONE]
    lines.append(text.SLACK_SUSPECTS_HEADER.format(count=len({(s.collection, s.source) for s in suspects})))
    for suspect in suspects[:limit]:
        lines.append(
            text.SLACK_SUSPECT_LINE.format(
                source=escape(suspect.source),
                collection=f" ({escape(suspect.collection)})" if suspect.collection else "",
                id=suspect.example_id,
                question=escape(suspect.question[:120]),
                answer=escape(suspect.corrected_answer[:160]),
            )
        )
    if len(suspects) > limit:
        lines.append(text.SLACK_SUSPECTS_MORE.format(count=len(suspects) - limit))
    return lines


def status_text(engine, tracks: list[str], advice: list[str] | None = None) -> str:
    parts = [
        text.SLACK_STATUS_HEADER,
        *adapter_lines(engine, tracks),
        "",
        text.SLACK_STATUS_PENDING.format(count=pending_count(engine)),
        "",
        text.SLACK_STATUS_RUNS,
        *run_lines(engine),
        "",
        *knowledge_lines(engine),
    ]
    if advice:
        parts += ["", *advice]
    return "\n".join(parts)


def adapters_text(engine) -> str:
    rows = list_adapters(engine)
    if not rows:
        return text.SLACK_ADAPTERS_EMPTY
    return "\n".join(
        text.SLACK_ADAPTER_LINE.format(
            name=escape(row.name),
            status=row.status,
            metrics=metrics_text(row.metrics),
            activated=f" (activated by <@{row.activated_by}>)" if row.activated_by else "",
        )
        for row in rows[-40:]
    )


def audit_text(engine, limit: int = 20) -> str:
    events = list_events(engine, limit=limit)
    if not events:
        return text.SLACK_AUDIT_EMPTY
    return "\n".join(
        text.SLACK_AUDIT_LINE.format(
            at=e.at.strftime("%Y-%m-%d %H:%M"),
            actor=who(e.actor),
            action=escape(e.action),
            target=escape(e.target or ""),
        )
        for e in events
    )
