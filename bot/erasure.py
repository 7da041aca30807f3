"""Erasure: everything stored about a person goes, everywhere, and the result says where.

`forget_user` is the database part, in one transaction: the person's interactions, examples, votes
and queued Slack events are deleted, adapters trained on their examples are marked tainted (and the
one in service withdrawn), and their id is replaced by a stable pseudonym in the audit log.
`erase_person` is the whole erasure that `apprenti forget` and `/apprenti forget` run: the database
part, then the weights of tainted versions, the review-channel posts (deleted, or redacted where
Slack refuses), the few-shot and knowledge stores (Chroma and BM25, compacted so that no deleted
text survives in their logs), a WAL checkpoint, the recorded export files, and a retrain without
the person's data, gated against a clean baseline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, delete, update
from sqlmodel import select

from bot import messages
from plugins.builtin.knowledge import entry_source
from storage.audit import audit, exports_holding, pseudonymise, record
from storage.db import checkpoint, session_scope
from storage.interactions import summarise_votes
from storage.models import Adapter, AdapterStatus, Example, Interaction, SlackEvent, TrainingRun, Vote

log = logging.getLogger("apprenti.erasure")

REDACTED = messages.ERASED_REVIEW_POST
ANSWER_REDACTED = messages.ERASED_ANSWER
KEY_FILE = ".pseudonym-key"
ECHO_MIN_CHARS = 24  # shorter passages ("Yes, in the HR portal.") are anyone's words


def normalise_user(user_id: str) -> str:
    """`U123`, `@U123` or a Slack mention `<@U123|name>` -> `U123`."""
    user_id = user_id.strip().lstrip("@")
    if user_id.startswith("<@") or user_id.endswith(">"):
        user_id = user_id.strip("<@>").split("|")[0]
    return user_id


def pseudonym_for(user_id: str, key: bytes = b"") -> str:
    """The stable pseudonym that replaces `user_id` in the audit log: the same person always gets the
    same one, and without the key nobody can tell whose it is."""
    return "erased-" + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:16]


def pseudonym_key(home: Path) -> bytes:
    """The secret behind pseudonyms, made once in the data folder (mode 0600) and shared by replicas."""
    path = Path(home) / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def _delete_queued_events(session, user_id: str) -> int:
    """Slack events the person sent, still in the durable queue (their text is the question)."""
    rows = session.exec(
        select(SlackEvent.event_id, SlackEvent.body).where(SlackEvent.body.contains(user_id))
    ).all()
    mine = []
    for event_id, body in rows:
        try:
            envelope = json.loads(body)
        except ValueError:
            mine.append(event_id)  # unreadable and naming the person: it goes
            continue
        event = envelope.get("event") or {}
        if user_id in (event.get("user"), (event.get("message") or {}).get("user"), envelope.get("user_id")):
            mine.append(event_id)
    if mine:
        session.execute(delete(SlackEvent).where(SlackEvent.event_id.in_(mine)))
    return len(mine)


def _redact_echoes(session, examples: list[dict]) -> int:
    """Other people's answers built on the person's erased corrections: an answer that cited one of
    them as a team answer, or that repeats one word for word (few-shot pairs are copied too), has its
    text replaced by a notice and loses that source, snippet included. Returns the answers changed."""
    changed: dict[int, Interaction] = {}
    for example in examples:
        source = entry_source(example["id"])
        rows = list(
            session.exec(select(Interaction).where(cast(Interaction.sources, String).contains(source)))
        )
        for row in rows:
            row.sources = [s for s in row.sources or [] if s.get("source") != source]
            row.answer = ANSWER_REDACTED
            changed[row.id] = row
        for passage in (example["answer"], example["question"]):
            if passage and len(passage.strip()) >= ECHO_MIN_CHARS:
                for row in session.exec(
                    select(Interaction).where(Interaction.answer.contains(passage.strip()))
                ):
                    row.answer = ANSWER_REDACTED
                    changed[row.id] = row
    for row in changed.values():
        session.add(row)
    return len(changed)


def forget_user(
    engine, user_id: str, actor: str, *, pm=None, adapters_dir: str | Path = ".", pseudonym: str | None = None
) -> dict[str, Any]:
    """Delete everything the database holds about `user_id`, in one transaction, and say what was done.

    Examples are erased when the person wrote them or asked the question they correct. Adapters that
    contain any erased example are marked `tainted`; one in service leaves service at once (the
    previous clean version or the base model serves) and its track is returned in `retrain_tracks`.
    The result's `review_posts` are the review-channel messages about the erased corrections and
    `exports` the files recorded with the person's data; the audit log names the person only by
    `pseudonym` from then on.
    """
    from finetune.registry import Registry, RegistryError

    user_id = normalise_user(user_id)
    pseudonym = pseudonym or pseudonym_for(user_id)
    exports = [
        {
            "at": e.at.isoformat(),
            "by": e.actor,
            "file": (e.details or {}).get("file"),
            "where": e.target,
            "count": (e.details or {}).get("count"),
            "sha256": (e.details or {}).get("sha256"),
        }
        for e in exports_holding(engine, user_id)
    ]
    registry = Registry(engine, adapters_dir)
    with session_scope(engine) as session:
        interaction_ids = list(session.exec(select(Interaction.id).where(Interaction.user_id == user_id)))
        examples = list(
            session.exec(
                select(Example).where(
                    (Example.author_id == user_id) | (Example.interaction_id.in_(interaction_ids or [-1]))
                )
            )
        )
        erased_ids = {e.id for e in examples}
        tainted, tracks = [], set()
        for adapter in registry.mark_tainted(erased_ids, actor, session=session) if erased_ids else []:
            tainted.append(adapter.name)
            if adapter.status in (AdapterStatus.active.value, AdapterStatus.candidate.value):
                tracks.add(adapter.track)
        erased = [
            {
                "id": e.id,
                "question": e.question,
                "answer": e.corrected_answer,
                "track": e.track,
                "status": e.status,
            }
            for e in examples
        ]
        posts = sorted(
            {(e.review_channel, e.review_ts) for e in examples if e.review_channel and e.review_ts}
        )
        if erased_ids:
            session.execute(delete(Example).where(Example.id.in_(erased_ids)))
        # Votes are personal data too: their rows go, and the answers they rated are summarised again.
        voted = list(session.exec(select(Vote.interaction_id).where(Vote.user_id == user_id)))
        session.execute(delete(Vote).where(Vote.user_id == user_id))
        for row in session.exec(select(Interaction).where(Interaction.id.in_(voted or [-1]))):
            summarise_votes(session, row)
        if interaction_ids:
            session.execute(delete(Interaction).where(Interaction.id.in_(interaction_ids)))
        events = _delete_queued_events(session, user_id)
        # Where the person acted on others' data (reviewed, activated, triggered), the row stays and
        # names the pseudonym, as the audit log does.
        session.execute(update(Example).where(Example.reviewer_id == user_id).values(reviewer_id=pseudonym))
        session.execute(
            update(TrainingRun).where(TrainingRun.triggered_by == user_id).values(triggered_by=pseudonym)
        )
        session.execute(update(Adapter).where(Adapter.activated_by == user_id).values(activated_by=pseudonym))
        cards = list(session.exec(select(Adapter)))  # their card.json may name the person too
        cited = _redact_echoes(session, erased)
        result = {
            "user": user_id,
            "pseudonym": pseudonym,
            "interactions": len(interaction_ids),
            "examples": len(erased_ids),
            "tainted_adapters": sorted(tainted),
            "retrain_tracks": sorted(tracks),
        }
        counts = {k: v for k, v in result.items() if k not in ("user", "pseudonym")}
        record(
            session,
            actor,
            "user.forget",
            f"user:{pseudonym}",
            **counts,
            queued_events=events,
            answers_redacted=cited,
            exports=len(exports),
        )
        # From here on the log says what happened to `pseudonym`, never to whom.
        result["audit_rows_pseudonymised"] = pseudonymise(session, user_id, pseudonym)
    for adapter in cards:
        registry.rename_person(adapter, user_id, pseudonym)
    for track in sorted(tracks):
        active = registry.active(track)
        if active is not None and active.tainted:
            try:
                change = registry.withdraw(track, actor)
                result.setdefault("taken_out_of_service", []).append(
                    {"adapter": active.name, "now": change.active or "base model"}
                )
            except RegistryError as exc:
                log.error("could not take %s out of service: %s", active.name, exc)
    if pm is not None:
        for example in erased:
            pm.hook.example_changed(example=example, action="erased")
    result["review_posts"] = [{"channel": c, "ts": ts} for c, ts in posts]
    result["exports"] = exports
    result["erased_example_ids"] = sorted(erased_ids)
    log.info(
        "erased %s (now %s): %s interaction(s), %s example(s)",
        user_id,
        pseudonym,
        result["interactions"],
        result["examples"],
    )
    return result


# --- the rest of the erasure: Slack, the stores, the files -----------------------------------------
def retract_posts(client, posts: list[dict]) -> list[dict]:
    """Delete each review-channel message; where Slack refuses, replace its text and blocks."""
    from slack_sdk.errors import SlackApiError

    done = []
    for post in posts:
        outcome = {**post}
        try:
            client.chat_delete(channel=post["channel"], ts=post["ts"])
            outcome["outcome"] = "deleted"
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error == "message_not_found":
                outcome["outcome"] = "already gone"
            else:
                try:
                    client.chat_update(
                        channel=post["channel"],
                        ts=post["ts"],
                        text=REDACTED,
                        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": REDACTED}}],
                    )
                    outcome["outcome"] = f"redacted (delete refused: {error})"
                except SlackApiError as again:
                    outcome["outcome"] = (
                        f"failed ({error}, then {again.response.get('error')}): delete it by hand"
                    )
        done.append(outcome)
    return done


def _sweep_chroma(client, example_ids: list[int]) -> int:
    """Records of erased examples a plugin did not remove (not loaded in this process): few-shot pairs
    carry `example_id`, knowledge entries their `source`."""
    if not example_ids:
        return 0
    sources = [entry_source(i) for i in example_ids]
    removed = 0
    for collection in client.list_collections():
        for where in ({"example_id": {"$in": example_ids}}, {"source": {"$in": sources}}):
            found = collection.get(where=where, include=[])["ids"]
            if found:
                collection.delete(ids=found)
                removed += len(found)
    return removed


def purge_chroma(path: str | Path, timeout: float = 600.0) -> dict[str, Any]:
    """rag.index.purge_deleted on an embedded Chroma folder, in a process of its own: Chroma's bundled
    SQLite may hold locks on chroma.sqlite3 in this process, and a second SQLite library closing the
    file here would drop them (POSIX locks belong to the process), letting another writer in."""
    script = (
        "import json, sys; from rag.index import purge_deleted; print(json.dumps(purge_deleted(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the Chroma purge exited with {done.returncode}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compact_stores(settings, example_ids: list[int]) -> dict[str, Any]:
    """Chroma and BM25 keep no text of deleted records: leftovers removed, logs purged, WALs folded."""
    from rag.bm25 import LexicalIndex
    from rag.index import IndexUnavailable, open_client

    report: dict[str, Any] = {}
    try:
        if settings.chroma_url:
            client = open_client(url=settings.chroma_url)
        elif Path(settings.chroma_path).is_dir():
            client = open_client(path=settings.chroma_path)
        else:
            client = None
        report["records_swept"] = _sweep_chroma(client, example_ids) if client is not None else 0
    except IndexUnavailable as exc:
        report["chroma_error"] = str(exc)
    if settings.chroma_url:
        report["chroma"] = (
            "a Chroma server: its log is out of reach from here; purge it on the server "
            "(see docs/governance.md)"
        )
        lexical_dir = settings.home / "rag"
    else:
        report["chroma"] = purge_chroma(settings.chroma_path)
        lexical_dir = Path(settings.chroma_path)
    if example_ids and lexical_dir.is_dir():
        sources = [entry_source(i) for i in example_ids]
        for path in sorted(lexical_dir.glob("*.lexical.sqlite3")):
            lexical = LexicalIndex(path)
            lexical.remove_sources(sources)
            report.setdefault("bm25", {})[path.name] = lexical.compact()
    return report


def remove_exports(exports: list[dict]) -> list[dict]:
    """Delete each recorded export file that is still exactly as written; list the others."""
    listed = []
    for export in exports:
        path = Path(export["file"]) if export.get("file") else None
        item = {**export}
        if path is None:
            item["outcome"] = f"sent to {export.get('where')}: delete it there"
        elif not path.is_file():
            item["outcome"] = "no longer there"
        elif export.get("sha256") and hashlib.sha256(path.read_bytes()).hexdigest() == export["sha256"]:
            path.unlink()
            item["outcome"] = "deleted (export again to get the pairs without this person)"
        else:
            item["outcome"] = "changed since it was written: check it and delete the person's records by hand"
        listed.append(item)
    return listed


def _step(result: dict[str, Any], name: str, fn, default=None):
    """Run one step after the database part; a failure is logged and listed, and the others still run
    (the person's rows are gone already: what is left must be said, not hidden behind the first error)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - every step's failure is reported in `unfinished`
        log.exception("erasure step %r failed", name)
        result.setdefault("unfinished", []).append(
            f"{name}: {type(exc).__name__} (details in the log); run forget again to retry"
        )
        return default


def _review_posts(settings, posts: list[dict], slack) -> list[dict]:
    if not posts:
        return []
    if slack is None and settings.slack_bot_token:
        from bot.slack.notify import make_client

        slack = make_client(settings.slack_bot_token, settings.slack_api_url)
    if slack is None:
        return [{**p, "outcome": "not reached (no SLACK_BOT_TOKEN): delete it by hand"} for p in posts]
    return retract_posts(slack, posts)


def erase_person(runtime, user_id: str, actor: str, *, retrain: bool = True, slack=None) -> dict[str, Any]:
    """The whole erasure (what `apprenti forget` and `/apprenti forget` run); returns what was done,
    with `unfinished` listing any step that failed.

    `slack`: a WebClient for the review posts (default: one from SLACK_BOT_TOKEN, if set)."""
    from finetune.registry import Registry

    settings = runtime.settings
    settings.ensure_home()
    user_id = normalise_user(user_id)
    pseudonym = pseudonym_for(user_id, pseudonym_key(settings.home))
    result = forget_user(
        runtime.engine,
        user_id,
        actor,
        pm=runtime.plugins,
        adapters_dir=settings.adapters_dir,
        pseudonym=pseudonym,
    )
    registry = Registry(runtime.engine, settings.adapters_dir)
    result["weights_deleted"] = _step(result, "adapter weights", lambda: registry.purge_tainted(actor), [])
    # Base-model answers to held-out questions, the person's among them: a cache, rebuilt on demand.
    shutil.rmtree(Path(settings.adapters_dir) / ".eval-cache", ignore_errors=True)
    posts = result["review_posts"]
    result["review_posts"] = _step(
        result,
        "review posts",
        lambda: _review_posts(settings, posts, slack),
        [{**p, "outcome": "not done: delete it by hand"} for p in posts],
    )
    result["stores"] = _step(
        result, "Chroma and BM25", lambda: compact_stores(settings, result["erased_example_ids"])
    )
    result["database"] = _step(result, "database checkpoint", lambda: checkpoint(runtime.engine))
    exports = result["exports"]
    result["exports"] = _step(
        result,
        "exports",
        lambda: remove_exports(exports),
        [{**e, "outcome": "not done: delete it by hand"} for e in exports],
    )

    result["retrain_runs"] = []
    if retrain:
        from bot.scheduler import start_run

        for track in result["retrain_tracks"]:
            started = _step(
                result,
                f"retrain {track}",
                lambda t=track: start_run(runtime, t, "erasure", actor, force=True),
            )
            run, state = started or (None, None)
            result["retrain_runs"].append(
                {
                    "track": track,
                    "run": run.id if run else None,
                    "reasons": state.reasons if state else ["the run could not be queued"],
                }
            )
    audit(
        runtime.engine,
        actor,
        "user.forget.done",
        f"user:{pseudonym}",
        review_posts=[p.get("outcome") for p in result["review_posts"]],
        exports=[
            {"file": e.get("file") or e.get("where"), "outcome": e["outcome"]} for e in result["exports"]
        ],
        weights_deleted=result["weights_deleted"],
        retrain_runs=[r["run"] for r in result["retrain_runs"]],
        unfinished=result.get("unfinished", []),
    )
    return result


def summary(result: dict[str, Any]) -> str:
    """What `/apprenti forget` answers: the erasure's outcome, one line per thing done."""
    lines = [
        messages.SLACK_FORGOTTEN.format(
            user=result["user"], interactions=result["interactions"], examples=result["examples"]
        ),
        messages.SLACK_FORGOTTEN_AUDIT.format(pseudonym=result["pseudonym"]),
    ]
    if result.get("tainted_adapters"):
        lines.append(messages.SLACK_FORGOTTEN_TAINTED.format(names=", ".join(result["tainted_adapters"])))
    lines += [
        messages.SLACK_FORGOTTEN_WITHDRAWN.format(**item) for item in result.get("taken_out_of_service", [])
    ]
    lines += [messages.SLACK_FORGOTTEN_POST.format(**post) for post in result.get("review_posts", [])]
    lines += [
        messages.SLACK_FORGOTTEN_EXPORT.format(
            file=e.get("file") or e.get("where"), at=e["at"][:16], by=e["by"], outcome=e["outcome"]
        )
        for e in result.get("exports", [])
    ]
    for item in result.get("retrain_runs", []):
        lines.append(
            messages.SLACK_RETRAIN_QUEUED.format(id=item["run"], track=item["track"])
            if item["run"]
            else messages.SLACK_RETRAIN_REFUSED.format(
                track=item["track"], reasons="; ".join(item["reasons"])
            )
        )
    lines += [messages.SLACK_FORGOTTEN_UNFINISHED.format(step=step) for step in result.get("unfinished", [])]
    return "\n".join(lines)
