"""Which approved examples of a track an adapter has already been trained on.

An example counts as used once an adapter that did not fail holds it in `example_ids` (rejected ones
too: retraining on the same data would only be rejected again). The scheduler asks for the unused
count on every tick and every status view, so it is one COUNT in the database, not a query per example.
"""

from __future__ import annotations

from sqlalchemy import Engine, Integer, cast, func, select, true

from storage.db import session_scope
from storage.models import TRAINING_KINDS, Adapter, AdapterStatus, Example, ExampleStatus

# How each database expands a JSON array column into rows (a table-valued function with a `value` column).
_JSON_ELEMENTS = {"sqlite": func.json_each, "postgresql": func.json_array_elements_text}


def _used_by_track(track: str):
    return (Adapter.track == track, Adapter.status != AdapterStatus.failed.value)


def used_example_ids(engine: Engine, track: str) -> set[int]:
    """The ids of the track's examples that an adapter which did not fail was trained on."""
    with session_scope(engine) as session:
        lists = session.execute(select(Adapter.example_ids).where(*_used_by_track(track))).scalars()
        return {int(i) for ids in lists for i in (ids or [])}


def count_unused_examples(engine: Engine, track: str) -> int:
    """How many approved training pairs (behaviour or both) of the track no adapter (other than a failed
    one) was trained on. Facts go to the knowledge base and never call for a training run."""
    approved = (
        Example.track == track,
        Example.status == ExampleStatus.approved.value,
        Example.kind.in_(TRAINING_KINDS),
    )
    elements = _JSON_ELEMENTS.get(engine.dialect.name)
    with session_scope(engine) as session:
        if elements is None:  # another database: the used ids in one query, the count in a second
            used = used_example_ids(engine, track)
            ids = session.execute(select(Example.id).where(*approved)).scalars()
            return sum(i not in used for i in ids)
        element = elements(Adapter.example_ids).table_valued("value").alias("used_id")
        used = (
            select(cast(element.c.value, Integer))
            .select_from(Adapter)
            .join(element, true())
            .where(*_used_by_track(track))
        )
        return session.execute(
            select(func.count()).select_from(Example).where(*approved, Example.id.not_in(used))
        ).scalar_one()
