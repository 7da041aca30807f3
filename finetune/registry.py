"""The adapter registry: versions per track (`track/vN`), each a PEFT folder plus card.json.

Registration happens once training and evaluation are done: the finished folder is moved to
`<adapters_dir>/<track>/v<N>` and its row inserted, so a run that dies earlier leaves no adapter
behind. Activation, rollback and discard each change the table in one transaction with their
audit event; an adapter whose folder was deleted by hand is reported and never activated.
"""

from __future__ import annotations

import json
import platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage.adapters import active_adapter, get_adapter, list_adapters, taint_adapters
from storage.audit import record
from storage.db import session_scope
from storage.models import Adapter, AdapterStatus, utcnow

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
ACTIVATABLE = (AdapterStatus.candidate.value, AdapterStatus.retired.value, AdapterStatus.rejected.value)
_LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate")


class RegistryError(Exception):
    """A registry operation was refused; the message says why and what to do."""


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


def folder_ok(adapter: Adapter) -> bool:
    path = Path(adapter.path)
    return all((path / name).is_file() for name in ADAPTER_FILES)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def describe(adapter: Adapter) -> dict[str, Any]:
    """A JSON-ready view of an adapter row (what `apprenti adapters list/show --json` prints)."""
    return {
        "name": adapter.name,
        "track": adapter.track,
        "version": adapter.version,
        "status": adapter.status,
        "base_model": adapter.base_model,
        "path": adapter.path,
        "folder_present": folder_ok(adapter),
        "created_at": _iso(adapter.created_at),
        "dataset_fingerprint": adapter.dataset_fingerprint,
        "examples": len(adapter.example_ids),
        "parent_version": adapter.parent_version,
        "run_id": adapter.run_id,
        "activated_by": adapter.activated_by,
        "activated_at": _iso(adapter.activated_at),
        "tainted": adapter.tainted,
        "gate": (adapter.metrics or {}).get("verdict"),
    }


@dataclass
class Change:
    """What an activation, rollback or discard did."""

    track: str
    active: str | None  # the adapter now in service (None: the base model)
    previous: str | None
    action: str

    def as_dict(self) -> dict[str, Any]:
        return {"track": self.track, "active": self.active, "previous": self.previous, "action": self.action}


class Registry:
    def __init__(self, engine: Engine, adapters_dir: str | Path, *, keep: int = 5):
        """keep: how many retired/rejected/failed versions per track keep their weights (retention)."""
        self.engine = engine
        self.adapters_dir = Path(adapters_dir)
        self.keep = keep

    # --- reading -------------------------------------------------------------------------------------
    def get(self, name: str) -> Adapter:
        row = get_adapter(self.engine, name)
        if row is None:
            raise RegistryError(f"no adapter named {name!r}; `apprenti adapters list` shows the versions")
        return row

    def resolve(self, name: str, track: str | None = None) -> Adapter:
        """Accept `track/vN`, or `vN`/`N` within `track` (default track 'default')."""
        if "/" not in name:
            version = name[1:] if name.lower().startswith("v") else name
            if not version.isdigit():
                raise RegistryError(f"{name!r} is not an adapter version: use track/vN or vN")
            name = f"{track or 'default'}/v{int(version)}"
        return self.get(name)

    def list(self, track: str | None = None) -> list[Adapter]:
        return list_adapters(self.engine, track)

    def active(self, track: str) -> Adapter | None:
        return active_adapter(self.engine, track)

    def card(self, name: str) -> dict[str, Any]:
        adapter = self.get(name)
        path = Path(adapter.path) / "card.json"
        card = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        return {**card, **describe(adapter)}

    # --- registration ---------------------------------------------------------------------------------
    def register(
        self,
        folder: str | Path,
        *,
        track: str,
        base_model: str,
        status: AdapterStatus | str,
        dataset_fingerprint: str | None = None,
        example_ids: Sequence[int] = (),
        hyperparameters: dict | None = None,
        metrics: dict | None = None,
        run_id: int | None = None,
        triggered_by: str | None = None,
        base_revision: str | None = None,
        extra_card: dict | None = None,
    ) -> Adapter:
        """Move a finished PEFT folder into the registry as the track's next version and insert its row."""
        status = AdapterStatus(status)
        if status not in (AdapterStatus.candidate, AdapterStatus.rejected):
            raise RegistryError(f"a new adapter is registered as candidate or rejected, not {status.value}")
        folder = Path(folder)
        missing = [n for n in ADAPTER_FILES if not (folder / n).is_file()]
        if missing:
            raise RegistryError(f"{folder} is not a finished PEFT adapter (missing {', '.join(missing)})")
        config = json.loads((folder / "adapter_config.json").read_text())
        if "lm_head" in (config.get("modules_to_save") or []):
            raise RegistryError("the adapter saves lm_head in modules_to_save; vLLM cannot serve it")
        parent = self.active(track)
        track_dir = self.adapters_dir / track
        track_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            with session_scope(self.engine) as session:
                version = (
                    session.exec(select(func.max(Adapter.version)).where(Adapter.track == track)).one() or 0
                ) + 1
            name, target = f"{track}/v{version}", track_dir / f"v{version}"
            if target.exists():
                # A folder without a row (a crash between move and insert): keep it aside, never overwrite.
                target.rename(track_dir / f"v{version}.orphan-{utcnow():%Y%m%d%H%M%S}-{attempt}")
            card = {
                "name": name,
                "track": track,
                "version": version,
                "base_model": base_model,
                "base_revision": base_revision,
                "dataset_fingerprint": dataset_fingerprint,
                "example_ids": list(example_ids),
                "hyperparameters": hyperparameters or {},
                "lora": {
                    k: config.get(k)
                    for k in ("r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save")
                },
                "libraries": library_versions(),
                "metrics": metrics or {},
                "status": status.value,
                "parent_version": parent.name if parent else None,
                "run_id": run_id,
                "triggered_by": triggered_by,
                "activated_by": None,
                "activated_at": None,
                "created_at": utcnow().isoformat(),
                **(extra_card or {}),
            }
            (folder / "card.json").write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
            folder.rename(target)
            try:
                with session_scope(self.engine) as session:
                    row = Adapter(
                        track=track,
                        version=version,
                        name=name,
                        base_model=base_model,
                        path=str(target),
                        status=status.value,
                        dataset_fingerprint=dataset_fingerprint,
                        example_ids=list(example_ids),
                        hyperparameters=hyperparameters or {},
                        metrics=metrics or {},
                        parent_version=card["parent_version"],
                        run_id=run_id,
                    )
                    session.add(row)
                    session.flush()
                    record(
                        session,
                        triggered_by or "system",
                        "adapter.register",
                        name,
                        status=status.value,
                        run=run_id,
                        fingerprint=dataset_fingerprint,
                    )
                    session.refresh(row)
                    return row
            except IntegrityError:
                target.rename(folder)  # another process took this version number: try the next one
        raise RegistryError(f"could not allocate a version number for track {track!r}")

    # --- transitions -----------------------------------------------------------------------------------
    def _update_card(self, adapter: Adapter, **fields) -> None:
        path = Path(adapter.path) / "card.json"
        try:
            card = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            card.update(fields)
            path.write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
        except OSError:
            pass  # the database is the source of truth; the card is a convenience copy

    def activate(self, name: str, actor: str, *, reason: str = "activate") -> Change:
        """Put `name` in service for its track; the adapter in service before is retired. One transaction."""
        adapter = self.get(name)
        if adapter.status == AdapterStatus.active.value:
            return Change(adapter.track, name, name, "unchanged")
        if adapter.tainted:
            raise RegistryError(
                f"{name} was trained on data of a person since erased; it can never serve again. "
                "Activate a clean version, or retrain."
            )
        if adapter.status not in ACTIVATABLE:
            raise RegistryError(
                f"{name} is {adapter.status}; only a candidate, retired or rejected adapter can be activated"
            )
        if not folder_ok(adapter):
            raise RegistryError(
                f"{name}: its folder {adapter.path} is missing or incomplete (deleted by hand?); "
                "it cannot be activated. Retrain, or pick another version."
            )
        now = utcnow()
        try:
            with session_scope(self.engine) as session:
                previous = session.exec(
                    select(Adapter).where(
                        Adapter.track == adapter.track, Adapter.status == AdapterStatus.active.value
                    )
                ).first()
                if previous is not None:
                    session.execute(
                        update(Adapter)
                        .where(Adapter.id == previous.id)
                        .values(status=AdapterStatus.retired.value)
                    )
                result = session.execute(
                    update(Adapter)
                    .where(Adapter.id == adapter.id, Adapter.status == adapter.status)
                    .values(status=AdapterStatus.active.value, activated_by=actor, activated_at=now)
                )
                if result.rowcount != 1:
                    raise RegistryError(f"{name} changed while activating it; try again")
                record(
                    session,
                    actor,
                    f"adapter.{reason}",
                    name,
                    track=adapter.track,
                    previous=previous.name if previous else None,
                    gate=(adapter.metrics or {}).get("verdict"),
                )
        except IntegrityError:  # the one-active-per-track index: another activation committed first
            raise RegistryError(
                f"another version of track {adapter.track!r} was put in service at the same "
                f"time; {name} was not activated. `apprenti adapters list` shows which serves."
            ) from None
        self._update_card(
            adapter, status=AdapterStatus.active.value, activated_by=actor, activated_at=now.isoformat()
        )
        return Change(adapter.track, name, previous.name if previous else None, reason)

    def _served_before(self, track: str) -> list[Adapter]:
        """The clean (never tainted) retired versions that were in service, most recent first."""
        with session_scope(self.engine) as session:
            return list(
                session.exec(
                    select(Adapter)
                    .where(
                        Adapter.track == track,
                        Adapter.status == AdapterStatus.retired.value,
                        Adapter.tainted.is_(False),
                        Adapter.activated_at.is_not(None),
                    )
                    .order_by(Adapter.activated_at.desc(), Adapter.id.desc())
                )
            )

    def previous_active(self, track: str) -> Adapter | None:
        """The clean (never tainted) retired version that was in service most recently."""
        served = self._served_before(track)
        return served[0] if served else None

    def rollback(self, track: str, actor: str, to: str | None = None) -> Change:
        """Go back to `to`, or to the previously active version; with none, the base model serves the
        track."""
        if to is not None:
            target = self.resolve(to, track)
            if target.track != track:
                raise RegistryError(f"{target.name} belongs to track {target.track!r}, not {track!r}")
            return self.activate(target.name, actor, reason="rollback")
        if self.active(track) is None:
            raise RegistryError(
                f"track {track!r} has no active adapter: nothing to roll back "
                "(activate a version with `apprenti adapters activate track/vN`)"
            )
        target = self.previous_active(track)
        if target is not None:
            if not folder_ok(target):
                raise RegistryError(
                    f"the previous version {target.name} has lost its folder ({target.path}); "
                    "name another version: `apprenti adapters rollback track/vN`"
                )
            return self.activate(target.name, actor, reason="rollback")
        return self._to_base_model(track, actor, "rollback")

    def _to_base_model(self, track: str, actor: str, reason: str) -> Change:
        """Retire the version in service: the base model serves the track."""
        with session_scope(self.engine) as session:
            current = session.exec(
                select(Adapter).where(Adapter.track == track, Adapter.status == AdapterStatus.active.value)
            ).first()
            if current is None:
                raise RegistryError(f"track {track!r} has no active adapter: nothing to roll back")
            session.execute(
                update(Adapter).where(Adapter.id == current.id).values(status=AdapterStatus.retired.value)
            )
            record(
                session,
                actor,
                f"adapter.{reason}",
                current.name,
                track=track,
                previous=current.name,
                active=None,
            )
        self._update_card(current, status=AdapterStatus.retired.value)
        return Change(track, None, current.name, reason)

    def rename_person(self, adapter: Adapter, user_id: str, pseudonym: str) -> None:
        """Replace an erased person's id in the adapter's card (who triggered or activated it)."""
        path = Path(adapter.path) / "card.json"
        try:
            card = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError):
            return
        fields = {k: pseudonym for k in ("triggered_by", "activated_by") if card.get(k) == user_id}
        if fields:
            self._update_card(adapter, **fields)

    def withdraw(self, track: str, actor: str) -> Change | None:
        """Take the version in service out of service at once (it holds erased data): the most recent
        clean version that served before and still has its weights takes over, else the base model.
        Unlike a rollback this never fails for want of a previous version. None: nothing was in service."""
        if self.active(track) is None:
            return None
        for previous in self._served_before(track):
            if not folder_ok(previous):
                continue
            try:
                return self.activate(previous.name, actor, reason="withdraw")
            except RegistryError:  # changed meanwhile: try the next one, the base model at worst
                continue
        return self._to_base_model(track, actor, "withdraw")

    def purge_tainted(self, actor: str) -> list[str]:
        """Delete the weights of every tainted version not in service (they learnt erased data and can
        never serve again); a tainted candidate becomes rejected. Cards stay. Returns the names purged."""
        with session_scope(self.engine) as session:
            tainted = list(
                session.exec(
                    select(Adapter).where(
                        Adapter.tainted.is_(True), Adapter.status != AdapterStatus.active.value
                    )
                )
            )
            for adapter in tainted:
                if adapter.status == AdapterStatus.candidate.value:
                    session.execute(
                        update(Adapter)
                        .where(Adapter.id == adapter.id)
                        .values(status=AdapterStatus.rejected.value)
                    )
        purged = []
        for adapter in tainted:
            if any((Path(adapter.path) / name).exists() for name in ADAPTER_FILES):
                self._delete_weights(adapter)
                purged.append(adapter.name)
            rejected = (
                {"status": AdapterStatus.rejected.value}
                if adapter.status == AdapterStatus.candidate.value
                else {}
            )
            self._update_card(adapter, weights_deleted="trained on erased data", **rejected)
        if purged:
            with session_scope(self.engine) as session:
                record(
                    session, actor, "adapter.purge", None, adapters=purged, reason="trained on erased data"
                )
        return purged

    def discard(self, name: str, actor: str) -> Change:
        """Reject a candidate (or retired) version and delete its weights; the card stays for the record."""
        adapter = self.get(name)
        if adapter.status == AdapterStatus.active.value:
            raise RegistryError(
                f"{name} is in service; roll back or activate another version before discarding it"
            )
        with session_scope(self.engine) as session:
            result = session.execute(
                update(Adapter)
                .where(Adapter.id == adapter.id, Adapter.status != AdapterStatus.active.value)
                .values(status=AdapterStatus.rejected.value)
            )
            if result.rowcount != 1:
                raise RegistryError(f"{name} changed while discarding it; try again")
            record(session, actor, "adapter.discard", name, track=adapter.track, was=adapter.status)
        self._delete_weights(adapter)
        self._update_card(adapter, status=AdapterStatus.rejected.value, discarded_by=actor)
        return Change(adapter.track, None, None, "discard")

    def mark_tainted(self, example_ids: Sequence[int], actor: str, *, session=None) -> list[Adapter]:
        """Flag adapters trained on any of these examples (erasure) and audit it; returns them, those
        flagged before included. `session`: do it in the caller's transaction (the erasure's)."""
        if session is None:
            with session_scope(self.engine) as own:
                return self.mark_tainted(example_ids, actor, session=own)
        tainted = taint_adapters(session, example_ids)
        if tainted:
            names = [a.name for a in tainted]
            record(session, actor, "adapter.taint", None, adapters=names, examples=len(set(example_ids)))
        return tainted

    # --- retention ------------------------------------------------------------------------------------
    def _delete_weights(self, adapter: Adapter) -> None:
        path = Path(adapter.path)
        for name in ADAPTER_FILES:
            (path / name).unlink(missing_ok=True)

    def apply_retention(self, track: str, keep: int | None = None) -> list[str]:
        """Delete the weights of retired, rejected and failed versions beyond the newest `keep`; the active
        version, candidates and every card are kept. Returns the names pruned."""
        keep = self.keep if keep is None else keep
        old = [
            a
            for a in self.list(track)
            if a.status
            in (AdapterStatus.retired.value, AdapterStatus.rejected.value, AdapterStatus.failed.value)
        ]
        old.sort(key=lambda a: a.version, reverse=True)
        pruned = []
        for adapter in old[keep:]:
            if folder_ok(adapter):
                self._delete_weights(adapter)
                pruned.append(adapter.name)
        if pruned:
            with session_scope(self.engine) as session:
                record(session, "system", "adapter.prune", track, adapters=pruned, keep=keep)
        return pruned

    def clean_work_folders(self, track: str, keep_run: int | None = None) -> list[Path]:
        """Remove half-written training folders left by runs that died (never the one named keep_run)."""
        track_dir = self.adapters_dir / track
        removed = []
        if track_dir.is_dir():
            for path in track_dir.glob(".run-*"):
                if keep_run is not None and path.name.startswith(f".run-{keep_run}"):
                    continue
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    def work_folder(self, track: str, run_id: int | None) -> Path:
        return self.adapters_dir / track / f".run-{run_id if run_id is not None else 'adhoc'}"
