"""Readiness advice: the fine-tuning decision tree, made live from the team's own data.

RAG for facts that change, fine-tuning for tone and format once there are enough reviewed pairs,
few-shot examples before that, and a rollback when an adapter is liked less than the one before.
Per track, the approved corrections are counted by kind: facts went to the knowledge base (RAG),
tone and format to training, and the advice says which of the two the team's corrections call for.
Shown by `/apprenti status`, the App Home and `apprenti status`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from storage.adapters import list_adapters, tracks_with_adapters
from storage.examples import count_by_kind, count_examples, tracks_with_examples
from storage.interactions import adapter_feedback
from storage.knowledge import count_open_suspects, unindexed_entries
from storage.models import AdapterStatus, ExampleStatus
from storage.usage import count_unused_examples

RECOMMENDED_MIN = 50  # the literature's 50-100 pairs for tone and format
CHANGE_WINDOW_DAYS = 30
OFTEN = 0.2  # share of documents re-indexed within the window above which facts "change often"


@dataclass
class FeedbackRate:
    adapter: str
    answers: int
    up: int
    down: int

    @property
    def approval(self) -> float | None:
        rated = self.up + self.down
        return round(self.up / rated, 3) if rated else None


@dataclass
class TrackAdvice:
    track: str
    approved: int
    pending: int
    minimum: int
    threshold: int
    unused: int
    active: str | None
    last_gate: dict[str, Any] | None
    kinds: dict[str, int] = field(default_factory=dict)  # approved corrections: fact, behaviour, both
    recommendation: str | None = None  # rag | training | None (too few corrections to tell)
    feedback: list[FeedbackRate] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["feedback"] = [{**asdict(f), "approval": f.approval} for f in self.feedback]
        return data


def feedback_rates(engine, track: str) -> list[FeedbackRate]:
    """👍/👎 per adapter version that served the track (the base model as 'base')."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for adapter, feedback in adapter_feedback(engine, track):
        entry = counts[adapter or "base"]
        entry[0] += 1
        entry[1] += feedback == 1
        entry[2] += feedback == -1
    return [FeedbackRate(name, *values) for name, values in sorted(counts.items())]


def document_churn(sources: list[dict[str, Any]] | None, now: float | None = None) -> dict[str, Any] | None:
    """How many indexed documents changed within the window (each source: `indexed_at` as epoch seconds)."""
    if not sources:
        return None
    now = now or time.time()
    window = CHANGE_WINDOW_DAYS * 86400
    recent = sum(1 for s in sources if now - float(s["indexed_at"]) < window)
    return {
        "documents": len(sources),
        "changed_recently": recent,
        "window_days": CHANGE_WINDOW_DAYS,
        "often": recent / len(sources) >= OFTEN and len(sources) >= 3,
    }


def kind_advice(kinds: dict[str, int]) -> tuple[str | None, str | None]:
    """(rag | training | None, why) from the approved corrections' kinds."""
    facts, behaviour, both = kinds.get("fact", 0), kinds.get("behaviour", 0), kinds.get("both", 0)
    total = facts + behaviour + both
    if total < 5:
        return None, None
    counts = f"{facts} fact, {behaviour} tone/format and {both} both of {total} approved corrections"
    if facts + both / 2 > (behaviour + both / 2) * 2:
        return "rag", (
            f"Mostly facts ({counts}): they answer from the knowledge base already, and a small adapter "
            "learns facts poorly and forgets them — keep the documents right (re-ingest the ones listed "
            "as suspect) rather than counting on training."
        )
    if behaviour + both / 2 > (facts + both / 2) * 2:
        return "training", (
            f"Mostly tone and format ({counts}): that is what fine-tuning learns; retrieval cannot "
            "change how answers are written."
        )
    return (
        "both",
        f"A mix ({counts}): facts answer from the knowledge base, tone and format come from training.",
    )


def track_advice(engine, settings, track: str, *, unused: int, churn: dict[str, Any] | None) -> TrackAdvice:
    kinds = count_by_kind(engine, track)
    # Training learns behaviour and both pairs: facts do not count towards the minimum.
    approved = kinds["behaviour"] + kinds["both"]
    pending = count_examples(engine, status=ExampleStatus.pending.value, track=track)
    adapters = list_adapters(engine, track)
    active = next((a for a in adapters if a.status == AdapterStatus.active.value), None)
    evaluated = [a for a in adapters if a.metrics]
    last_gate = None
    if evaluated:
        last = max(evaluated, key=lambda a: a.version)
        last_gate = {
            "adapter": last.name,
            "status": last.status,
            **{k: v for k, v in last.metrics.items() if k in ("gate", "verdict", "target", "passed")},
        }
    minimum = max(settings.min_examples, 1)
    item = TrackAdvice(
        track=track,
        approved=approved,
        pending=pending,
        minimum=minimum,
        threshold=settings.train_threshold,
        unused=unused,
        active=active.name if active else None,
        last_gate=last_gate,
        kinds=kinds,
        feedback=feedback_rates(engine, track),
    )
    item.recommendation, why = kind_advice(kinds)
    if why:
        item.advice.append(why)
    if churn and churn["often"]:
        item.advice.append(
            f"{churn['changed_recently']} of {churn['documents']} documents changed in the last "
            f"{churn['window_days']} days: keep facts in RAG (re-ingest), and fine-tune for tone and format "
            "only."
        )
    if approved < minimum:
        item.advice.append(
            f"{approved} approved tone/format pairs; fine-tuning needs at least {minimum} (50-100 is the "
            "usual range for tone and format). Until then approved pairs already help as few-shot examples "
            f"— {minimum - approved} to go."
        )
    elif unused < settings.train_threshold:
        item.advice.append(
            f"{unused} new approved pairs since the last adapter; the next training starts at "
            f"{settings.train_threshold}."
        )
    else:
        item.advice.append("Enough new approved pairs: training will start at the scheduler's next check.")
    if pending:
        item.advice.append(f"{pending} correction(s) wait for review.")
    by_name = {f.adapter: f for f in item.feedback}
    if active and active.parent_version is not None:
        current, previous = by_name.get(active.name), by_name.get(active.parent_version or "base")
        if (
            current
            and previous
            and current.approval is not None
            and previous.approval is not None
            and current.up + current.down >= 10
            and current.approval < previous.approval - 0.1
        ):
            item.advice.append(
                f"{active.name} is liked less than {active.parent_version} ({current.approval:.0%} vs "
                f"{previous.approval:.0%} 👍): consider `/apprenti rollback`."
            )
    if last_gate and last_gate.get("status") in (AdapterStatus.rejected.value, AdapterStatus.candidate.value):
        item.advice.append(
            f"The last candidate, {last_gate['adapter']}, was not put in service "
            f"({last_gate['status']}): see its report with `/apprenti adapters`."
        )
    return item


def readiness_report(engine, settings, *, sources: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Advice for every track that has examples or adapters."""
    churn = document_churn(sources)
    tracks = sorted(set(tracks_with_examples(engine)) | set(tracks_with_adapters(engine)) | {"default"})
    items = [
        track_advice(
            engine, settings, track, unused=count_unused_examples(engine, track), churn=churn
        ).to_json()
        for track in tracks
    ]
    waiting = unindexed_entries(engine)
    knowledge = {
        "suspect_documents": count_open_suspects(engine),
        "unindexed": [e.id for e in waiting],
        "index_errors": sorted({e.index_error for e in waiting if e.index_error})[:3],
    }
    return {"documents": churn, "knowledge": knowledge, "tracks": items}
