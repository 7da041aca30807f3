"""What happens when a reviewer decides on a correction, for Slack and the command line alike.

An approved correction is routed by its kind (DESIGN: "What goes where"): a **fact** becomes a
team knowledge entry, written to the index at once by the plugins (example_changed) and cited as a
team answer; earlier facts on the same question are replaced, and the documents the wrong answer
cited are flagged for their owners. A **behaviour** pair waits for training; **both** goes both
ways. Rejecting, editing, re-kinding or erasing keeps the knowledge base in step the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from plugins.profile import Profile
from storage.examples import get_example, review_example, set_kind
from storage.interactions import get_interaction
from storage.knowledge import flag_documents, is_knowledge_entry, supersede
from storage.models import Example, ExampleKind, ExampleStatus

log = logging.getLogger("apprenti.corrections")

# An earlier entry whose question scores at least this against the new one's (the questions alone,
# cosine) is the same question: "Which VPN client do we use?" / "What VPN client do we use?" 0.97,
# a paraphrase such as "What VPN software should I install?" about 0.7.
SAME_QUESTION = 0.9


def example_data(example: Example) -> dict[str, Any]:
    """An example as plugins receive it (see plugins/hookspecs.py)."""
    return {
        "id": example.id,
        "question": example.question,
        "answer": example.corrected_answer,
        "track": example.track,
        "status": example.status,
        "kind": example.kind,
    }


def tell_plugins(pm, example: Example, action: str) -> bool | None:
    """Tell the plugins a pair changed. Returns whether its knowledge entry reached the index (None
    when no plugin keeps one). A failing plugin is logged, never fatal to the decision."""
    try:
        results = pm.hook.example_changed(example=example_data(example), action=action)
    except Exception:  # noqa: BLE001 - a plugin's bug must not undo a reviewer's decision
        log.exception("a plugin failed in example_changed(%s) for example #%s", action, example.id)
        return False if is_knowledge_entry(example) else None
    flags = [r["knowledge_indexed"] for r in results if isinstance(r, dict) and "knowledge_indexed" in r]
    return all(flags) if flags else None


@dataclass
class Decision:
    """The outcome of a review action, for the reviewer's message and the review post."""

    example: Example | None
    outcome: str  # done | not_pending | gone
    replaced: list[Example] = field(default_factory=list)
    indexed: bool | None = None  # the knowledge entry reached the index (None: not an entry)
    flagged: int = 0  # documents newly listed as suspect

    @property
    def done(self) -> bool:
        return self.outcome == "done"


def _earlier_entries(engine, pm, example: Example, cited: list[dict]) -> list[int]:
    """Live entries this approved fact replaces: the team answers the corrected answer cited (they
    were wrong), and entries on the same question (the later approval wins)."""
    ids: set[int] = set()
    for source in cited:
        if source.get("kind") == "team_answer" and source.get("example_id"):
            ids.add(int(source["example_id"]))
    try:
        hits = [
            hit
            for result in pm.hook.team_answers(
                question=example.question, profile=Profile(track=example.track), k=5
            )
            for hit in result or []
        ]
    except Exception:  # noqa: BLE001 - replacing is a courtesy; the new entry is indexed regardless
        log.exception("could not look for earlier team answers to the question of example #%s", example.id)
        hits = []
    for hit in hits:
        other = get_example(engine, int(hit.get("example_id") or 0))
        if (
            other is not None
            and other.id != example.id
            and hit.get("question_score", hit.get("score", 0.0)) >= SAME_QUESTION
            and " ".join(other.corrected_answer.split()) != " ".join(example.corrected_answer.split())
        ):
            ids.add(other.id)
    ids.discard(example.id)
    return sorted(ids)


def route(pm, engine, example: Example, action: str, actor: str) -> Decision:
    """Send an approved (or changed) example where its kind says, and tell the plugins."""
    decision = Decision(example, "done")
    if is_knowledge_entry(example):
        row = get_interaction(engine, example.interaction_id) if example.interaction_id else None
        cited = (row.sources if row is not None else None) or []  # what the corrected answer cited
        decision.replaced = supersede(engine, _earlier_entries(engine, pm, example, cited), example.id, actor)
        for old in decision.replaced:
            tell_plugins(pm, old, "superseded")
        decision.flagged = flag_documents(engine, example.id, cited) if cited else 0
    decision.indexed = tell_plugins(pm, example, action)
    decision.example = get_example(engine, example.id) or example
    return decision


def decide(
    engine,
    pm,
    example_id: int,
    status: ExampleStatus | str,
    reviewer: str,
    *,
    corrected: str | None = None,
    kind: ExampleKind | str | None = None,
) -> Decision:
    """Approve or reject a pending example (editing its answer or kind on the way), then route it."""
    status = ExampleStatus(status)
    example = review_example(engine, example_id, status, reviewer, corrected_answer=corrected, kind=kind)
    if example is None:
        current = get_example(engine, example_id)
        return Decision(current, "gone" if current is None else "not_pending")
    if status == ExampleStatus.rejected:
        return Decision(example, "done", indexed=tell_plugins(pm, example, "rejected"))
    return route(pm, engine, example, "edited" if corrected is not None else "approved", reviewer)


def change_kind(engine, pm, example_id: int, kind: ExampleKind | str, actor: str) -> Decision:
    """A reviewer's one click: the example is now a fact, a behaviour or both. An approved one moves
    between the knowledge base and training at once."""
    before = get_example(engine, example_id)
    example = set_kind(engine, example_id, kind, actor)
    if example is None:
        return Decision(before, "gone" if before is None else "not_pending")
    if example.status != ExampleStatus.approved.value:
        return Decision(example, "done")
    return route(pm, engine, example, "kind", actor)
