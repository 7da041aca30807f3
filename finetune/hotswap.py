"""Hot swap: a serving process follows the registry and swaps adapters without reloading the base.

`AdapterWatcher(engine, chat_model).refresh()` reads the active version of every track (one small
query), loads what changed into the shared ChatModel (`load_adapter`, milliseconds on the same base
weights) and unloads versions no longer in service. Call it from a timer, or `start()` a thread
that polls every couple of seconds. `adapter_for(track)` is what to pass to `generate(adapter=...)`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from storage.adapters import active_adapters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swap:
    track: str
    old: str | None
    new: str | None
    error: str | None = None

    def as_dict(self) -> dict:
        return {"track": self.track, "old": self.old, "new": self.new, "error": self.error}


class AdapterWatcher:
    def __init__(
        self,
        engine: Engine,
        chat_model,
        tracks: Iterable[str] | None = None,
        *,
        keep_loaded: int = 2,
        preload_candidates: bool = True,
    ):
        """tracks: only follow these tracks (None: every track). keep_loaded: versions kept in memory
        after they leave service, so a rollback is a pointer switch. preload_candidates: load candidate
        versions as soon as they are registered, so activating one is a pointer switch too."""
        self.engine = engine
        self.keep_loaded = keep_loaded
        self.preload_candidates = preload_candidates
        self._resident: list[str] = []  # loaded but not serving, oldest first
        self.chat_model = chat_model
        self.tracks = set(tracks) if tracks is not None else None
        self._serving: dict[str, str] = {}  # track -> adapter name in service in this process
        self._failed: dict[str, str] = {}  # track -> adapter name that could not be loaded (not retried)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def adapter_for(self, track: str) -> str | None:
        """The adapter this process serves for `track` (None: the base model)."""
        return self._serving.get(track)

    @property
    def serving(self) -> dict[str, str]:
        return dict(self._serving)

    def refresh(self) -> list[Swap]:
        """Bring the loaded adapters in line with the registry; returns what changed."""
        with self._lock:
            wanted = {
                t: a
                for t, a in active_adapters(self.engine).items()
                if self.tracks is None or t in self.tracks
            }
            swaps: list[Swap] = []
            for track in sorted(set(wanted) | set(self._serving)):
                row = wanted.get(track)
                new = row.name if row else None
                old = self._serving.get(track)
                if new == old or (new is not None and self._failed.get(track) == new):
                    continue
                if new is None:
                    del self._serving[track]
                    self._unload_if_unused(old)
                    swaps.append(Swap(track, old, None))
                    log.info("track %s: back to the base model (was %s)", track, old)
                    continue
                try:
                    self.chat_model.load_adapter(new, row.path)
                except Exception as exc:  # noqa: BLE001 - keep serving the old adapter, report the failure
                    self._failed[track] = new
                    swaps.append(Swap(track, old, old, error=f"{new}: {exc}"))
                    log.error("track %s: cannot load %s, still serving %s: %s", track, new, old, exc)
                    continue
                self._failed.pop(track, None)
                if new in self._resident:
                    self._resident.remove(new)
                self._serving[track] = new
                self._unload_if_unused(old)
                swaps.append(Swap(track, old, new))
                log.info("track %s: now serving %s (was %s)", track, new, old)
            if self.preload_candidates:
                self._preload()
            return swaps

    def _preload(self) -> None:
        from sqlmodel import select

        from storage.db import session_scope
        from storage.models import Adapter, AdapterStatus

        with session_scope(self.engine) as session:
            rows = session.exec(select(Adapter).where(Adapter.status == AdapterStatus.candidate.value)).all()
        for row in rows:
            if (
                self.tracks is not None and row.track not in self.tracks
            ) or row.name in self.chat_model.adapters:
                continue
            try:
                self.chat_model.load_adapter(row.name, row.path)
            except Exception as exc:  # noqa: BLE001 - a broken candidate is reported when activated
                log.warning("cannot preload candidate %s: %s", row.name, exc)
                continue
            self._keep_resident(row.name)

    def _keep_resident(self, name: str) -> None:
        if name in self._resident:
            self._resident.remove(name)
        self._resident.append(name)
        while len(self._resident) > self.keep_loaded:
            evicted = self._resident.pop(0)
            if evicted not in self._serving.values():
                self.chat_model.remove_adapter(evicted)

    def _unload_if_unused(self, name: str | None) -> None:
        if name and name not in self._serving.values():
            self._keep_resident(name)

    # --- background polling ---------------------------------------------------------------------------
    def start(self, interval: float = 2.0) -> AdapterWatcher:
        if self._thread and self._thread.is_alive():
            return self
        self._stop.clear()

        def loop():
            while not self._stop.is_set():
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001 - a database hiccup must not kill the watcher
                    log.exception("adapter watcher: refresh failed")
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="apprenti-adapter-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
            self._thread = None
