"""The admin engines behind `/apprenti` and the App Home buttons.

Each engine lives in its own part (the adapter registry in finetune/registry.py, the scheduler's
`start_run`, erasure in bot/erasure.py, ingestion in bot/documents.py); this module only calls them
and turns the outcome into a sentence. The engines audit their own transitions."""

from __future__ import annotations

import json
import logging

from bot import messages as text
from bot.documents import ingest_paths
from bot.erasure import erase_person
from bot.scheduler import start_run
from finetune.dataset import user_message
from finetune.formats import people_of
from finetune.registry import Registry, RegistryError
from storage.adapters import list_adapters
from storage.audit import audit, record_export
from storage.examples import list_examples
from storage.models import ExampleStatus

log = logging.getLogger("apprenti.slack.ops")


class Operations:
    def __init__(self, runtime):
        self.runtime = runtime

    @property
    def engine(self):
        return self.runtime.engine

    def registry(self):
        return Registry(self.engine, self.runtime.settings.adapters_dir)

    def tracks(self) -> list[str]:
        known = {a.track for a in list_adapters(self.engine)}
        known |= {e.track for e in list_examples(self.engine)}
        known |= {p.track for p in self.runtime.profiles.all().values()}
        return sorted(known or {"default"})

    def _guard(self, what: str, fn):
        try:
            return fn()
        except RegistryError as exc:  # written for admins: what to do next
            return text.SLACK_ADMIN_FAILED.format(what=what, error=exc)
        except Exception:  # noqa: BLE001 - the admin reads an error id; the log has the trace
            from bot.slack.errors import report

            return text.SLACK_ADMIN_FAILED.format(what=what, error=report(log, what))

    def retrain(self, track: str, actor: str) -> str:
        """Start a run now (threshold and interval waived; the minimum of examples still applies)."""
        if track not in self.tracks():
            return text.SLACK_ADMIN_FAILED.format(
                what=f"retrain {track}", error=f"unknown track; known: {', '.join(self.tracks())}"
            )

        def run():
            started, state = start_run(self.runtime, track, "admin", actor, force=True)
            if started is None:
                return text.SLACK_RETRAIN_REFUSED.format(track=track, reasons="; ".join(state.reasons))
            return text.SLACK_RETRAIN_QUEUED.format(id=started.id, track=track)

        return self._guard(f"retrain {track}", run)

    def retrain_preview(self, track: str) -> str:
        """What `retrain` would train now, and whether it could start (nothing is started)."""
        from bot.scheduler import readiness, used_example_ids
        from finetune.dataset import NotEnoughExamples, build_dataset

        if track not in self.tracks():
            return text.SLACK_ADMIN_FAILED.format(
                what=f"retrain {track} --dry-run", error=f"unknown track; known: {', '.join(self.tracks())}"
            )
        state = readiness(self.engine, self.runtime.settings, track, force=True)
        try:
            dataset = build_dataset(self.engine, track, min_examples=1)
            info = dataset.summary()
            new = len(set(dataset.example_ids) - used_example_ids(self.engine, track))
            data = text.SLACK_RETRAIN_PREVIEW.format(
                track=track,
                train=info["train"],
                test=info["test"],
                new=new,
                fingerprint=str(dataset.fingerprint)[:12],
            )
        except NotEnoughExamples:
            data = text.SLACK_RETRAIN_PREVIEW_EMPTY.format(track=track)
        verdict = (
            text.SLACK_RETRAIN_WOULD_START
            if state.due
            else text.SLACK_RETRAIN_WOULD_REFUSE.format(reasons="; ".join(state.reasons))
        )
        return f"{data} {verdict}"

    def _change(self, what: str, change) -> str:
        now = change.active or text.SLACK_BASE_MODEL
        return text.SLACK_ADAPTER_CHANGED.format(
            what=what, track=change.track, active=now, previous=change.previous or text.SLACK_BASE_MODEL
        )

    def activate(self, name: str, actor: str) -> str:
        registry = self.registry()
        return self._guard(
            f"activate {name}",
            lambda: self._change(f"activate {name}", registry.activate(registry.resolve(name).name, actor)),
        )

    def rollback(self, target: str | None, actor: str) -> str:
        """`target` is a track (back to the previous version), a `track/vN` name, or nothing (default)."""
        registry = self.registry()
        if target and "/" in target:
            track, to = target.split("/", 1)[0], target
        else:
            track, to = target or "default", None
        return self._guard(
            f"rollback {target or track}",
            lambda: self._change(f"rollback {target or track}", registry.rollback(track, actor, to=to)),
        )

    def discard(self, name: str, actor: str) -> str:
        registry = self.registry()
        return self._guard(
            f"discard {name}",
            lambda: self._change(f"discard {name}", registry.discard(registry.resolve(name).name, actor)),
        )

    def forget(self, user_id: str, actor: str) -> str:
        def run():
            from bot.erasure import summary

            return summary(erase_person(self.runtime, user_id, actor))

        return self._guard(f"forget <@{user_id}>", run)

    def allowed_files(self, paths: list[str]) -> list[str] | str:
        """The files `paths` name, if every one resolves (symlinks followed) inside
        APPRENTI_DOCUMENT_ROOTS; otherwise the sentence refusing them."""
        from pathlib import Path

        from rag.loaders import MissingPathError, discover

        roots = [Path(r).expanduser().resolve() for r in self.runtime.settings.document_roots]
        if not roots:
            return text.SLACK_INGEST_NO_ROOTS
        shown = ", ".join(str(r) for r in roots)
        for path in paths:
            if not any(Path(path).expanduser().resolve().is_relative_to(root) for root in roots):
                return text.SLACK_INGEST_OUTSIDE.format(path=path, roots=shown)
        try:
            files, _ = discover(paths)
        except MissingPathError as exc:
            return text.SLACK_ADMIN_FAILED.format(what="ingest", error=exc)
        for file in files:  # discover resolves each file: a symlink inside a root shows where it leads
            if not any(file.is_relative_to(root) for root in roots):
                return text.SLACK_INGEST_OUTSIDE.format(path=file, roots=shown)
        return [str(file) for file in files]

    def ingest(self, paths: list[str], actor: str) -> str:
        files = self.allowed_files(paths)
        if isinstance(files, str):
            audit(
                self.engine,
                actor,
                "slack.denied",
                "ingest",
                reason="outside the document roots",
                paths=len(paths),
            )
            return files

        def run():
            result = ingest_paths(
                self.runtime.settings, files, engine=self.engine, index=self.runtime.documents
            )
            audit(
                self.engine, actor, "slack.ingest", ",".join(paths)[:200], documents=result.get("documents")
            )
            return text.SLACK_INGESTED.format(
                paths=" ".join(paths),
                documents=result.get("documents", 0),
                details=json.dumps({k: v for k, v in result.items() if isinstance(v, int | float | str)})[
                    :500
                ],
            )

        return self._guard("ingest", run)

    def export(self, actor: str) -> tuple[str, int]:
        """The approved pairs as OpenAI chat JSON Lines (what `apprenti examples import --format
        openai` reads)."""
        rows = list_examples(self.engine, status=ExampleStatus.approved.value)
        lines = []
        for row in rows:
            user = user_message(row.question, row.context)  # the user turn training sees
            lines.append(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": user},
                            {"role": "assistant", "content": row.corrected_answer},
                        ]
                    },
                    ensure_ascii=False,
                )
            )
        record_export(
            self.engine,
            actor,
            f"slack:dm:{actor}",
            people_of(self.engine, rows),
            count=len(rows),
            format="openai",
            via="slack",
        )
        return "\n".join(lines) + ("\n" if lines else ""), len(rows)
