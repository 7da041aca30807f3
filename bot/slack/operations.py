"""The admin engines behind `/apprenti` and the App Home buttons, and what each needs to work.

Some engines are built elsewhere (the adapter registry in finetune/registry.py, erasure, ingestion).
`available()` says which exist in this installation, so `help` lists only what works and a missing
one is explained instead of failing. Each call returns a sentence for the admin and audits itself
(the engines audit their own transitions)."""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot import messages as text
from storage.adapters import list_adapters
from storage.audit import audit
from storage.examples import list_examples
from storage.models import ExampleStatus
from storage.runs import acquire_run, active_run

log = logging.getLogger("apprenti.slack.ops")


class Unavailable(Exception):
    """The engine for a command is not installed yet; the message says what is missing."""


@dataclass(frozen=True)
class Engine:
    module: str
    function: str

    def load(self) -> Callable:
        try:
            module = importlib.import_module(self.module)
        except ImportError:
            raise Unavailable(f"{self.module} is not installed") from None
        fn = getattr(module, self.function, None)
        if fn is None:
            raise Unavailable(f"{self.module}.{self.function} does not exist") from None
        return fn


# Engines built by other parts. Expected signatures (keyword arguments):
#   activate(engine, name, actor)            -> the activated Adapter
#   rollback(engine, track, actor, to=None)  -> the Adapter now active
#   discard(engine, name, actor)             -> the discarded Adapter
#   forget_user(engine, user_id, actor)      -> a dict of counts
#   ingest_paths(settings, paths)            -> a dict with "documents" and "chunks"
ENGINES = {
    "activate": Engine("finetune.registry", "activate"),
    "rollback": Engine("finetune.registry", "rollback"),
    "discard": Engine("finetune.registry", "discard"),
    "forget": Engine("bot.erasure", "forget_user"),
    "ingest": Engine("rag.ingest", "ingest_paths"),
}


def available(name: str) -> tuple[bool, str]:
    """Whether a command's engine exists here, and if not, why."""
    engine = ENGINES.get(name)
    if engine is None:
        return True, ""
    try:
        engine.load()
    except Unavailable as exc:
        return False, str(exc)
    return True, ""


class Operations:
    def __init__(self, runtime):
        self.runtime = runtime

    @property
    def engine(self):
        return self.runtime.engine

    def tracks(self) -> list[str]:
        known = {a.track for a in list_adapters(self.engine)}
        known |= {e.track for e in list_examples(self.engine)}
        known |= {p.track for p in self.runtime.profiles.all().values()}
        return sorted(known or {"default"})

    def retrain(self, track: str, actor: str) -> str:
        """Queue a run; the run row is the lease, so a second click while one is in flight says so."""
        if track not in self.tracks():
            return text.SLACK_ADMIN_FAILED.format(what=f"retrain {track}",
                                                  error=f"unknown track; known: {', '.join(self.tracks())}")
        run = acquire_run(self.engine, track, trigger="admin", triggered_by=actor)
        if run is None:
            busy = active_run(self.engine, track)
            return text.SLACK_RETRAIN_BUSY.format(track=track, id=busy.id if busy else "?")
        return text.SLACK_RETRAIN_QUEUED.format(id=run.id, track=track)

    def _call(self, name: str, what: str, **kwargs) -> str:
        fn = ENGINES[name].load()
        try:
            result = fn(self.engine, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the admin reads the reason; the log has the trace
            log.exception("%s failed", what)
            return text.SLACK_ADMIN_FAILED.format(what=what, error=exc)
        done = getattr(result, "name", None) or (json.dumps(result) if isinstance(result, dict) else "")
        return text.SLACK_ADMIN_DONE.format(what=what) + (f" {done}" if done else "")

    def activate(self, name: str, actor: str) -> str:
        return self._call("activate", f"activate {name}", name=name, actor=actor)

    def rollback(self, target: str | None, actor: str) -> str:
        """`target` is a track (roll back to the previous version) or a `track/vN` name."""
        track, to = (target.split("/", 1)[0], target) if target and "/" in target else (target or "default", None)
        return self._call("rollback", f"rollback {target or track}", track=track, actor=actor, to=to)

    def discard(self, name: str, actor: str) -> str:
        return self._call("discard", f"discard {name}", name=name, actor=actor)

    def forget(self, user_id: str, actor: str) -> str:
        return self._call("forget", f"forget <@{user_id}>", user_id=user_id, actor=actor)

    def ingest(self, paths: list[str], actor: str) -> str:
        fn = ENGINES["ingest"].load()
        try:
            result = fn(self.runtime.settings, paths)
        except Exception as exc:  # noqa: BLE001
            log.exception("ingest failed")
            return text.SLACK_ADMIN_FAILED.format(what="ingest", error=exc)
        audit(self.engine, actor, "slack.ingest", ",".join(paths), result=result)
        return text.SLACK_ADMIN_DONE.format(what=f"ingest {' '.join(paths)}") + f" {json.dumps(result)}"

    def export(self, actor: str) -> tuple[str, int]:
        """The approved pairs as OpenAI chat JSON Lines (the format `apprenti examples import` reads)."""
        rows = list_examples(self.engine, status=ExampleStatus.approved.value)
        lines = []
        for row in rows:
            user = f"{row.context}\n\n{row.question}" if row.context else row.question
            lines.append(json.dumps({"messages": [{"role": "user", "content": user},
                                                  {"role": "assistant", "content": row.corrected_answer}]},
                                    ensure_ascii=False))
        audit(self.engine, actor, "examples.export", None, count=len(rows), via="slack")
        return "\n".join(lines) + ("\n" if lines else ""), len(rows)
