"""Hot swap: a serving process follows the registry and swaps adapters without reloading the base.

`AdapterWatcher(engine, target).refresh()` reads the active version of every track (one small
query), loads what changed into the target (`load_adapter`, milliseconds on the same base weights
for the local ChatModel; a request to the model server for vLLM) and unloads versions no longer in
service. `current(track)` refreshes at most every `refresh_seconds` and says which adapter serves
the track: what to pass to `generate(adapter=...)`. Or `start()` a thread that polls.

The target is anything with `load_adapter(name, path)`, `remove_adapter(name)` and `adapters` (the
names it holds): the local backend's ChatModel, or the OpenAI-compatible backend's view of its model
server (bot/llm.py `ServerAdapters`). It is the one watcher of the registry in a serving process.
"""

from __future__ import annotations

import logging
import math
import threading
import time
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
        refresh_seconds: float = 2.0,
        retry_seconds: float | None = None,
    ):
        """tracks: only follow these tracks (None: every track). keep_loaded: versions kept in memory
        after they leave service, so a rollback is a pointer switch. preload_candidates: load candidate
        versions as soon as they are registered, so activating one is a pointer switch too.
        refresh_seconds: how often `current` reads the registry. retry_seconds: when to try loading an
        adapter that failed again (None: not until the registry names another one)."""
        self.engine = engine
        self.keep_loaded = keep_loaded
        self.preload_candidates = preload_candidates
        self.refresh_seconds = refresh_seconds
        self.retry_seconds = retry_seconds
        self._resident: list[str] = []  # loaded but not serving, oldest first
        self.chat_model = chat_model
        self.tracks = set(tracks) if tracks is not None else None
        self._serving: dict[str, str] = {}  # track -> adapter name in service in this process
        # track -> (adapter name that could not be loaded, when): served by the base or the old one
        self._failed: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._refreshed = -math.inf  # a first `current` reads the registry at once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def adapter_for(self, track: str) -> str | None:
        """The adapter this process serves for `track` (None: the base model)."""
        return self._serving.get(track)

    @property
    def serving(self) -> dict[str, str]:
        return dict(self._serving)

    def failed_for(self, track: str) -> str | None:
        """The adapter the registry puts in service for `track` that this process could not load."""
        failed = self._failed.get(track)
        return failed[0] if failed else None

    def current(self, track: str) -> str | None:
        """The adapter serving `track` now, the registry read again if the last read is older than
        `refresh_seconds`; a failed read or load is logged and what is loaded keeps serving."""
        with self._refresh_lock:
            if time.monotonic() - self._refreshed >= self.refresh_seconds:
                try:
                    for swap in self.refresh():
                        if swap.error:
                            log.error(
                                "track %s: %s; still serving %s",
                                swap.track,
                                swap.error,
                                swap.old or "the base model",
                            )
                except Exception:  # noqa: BLE001 - a registry hiccup must not stop answers
                    log.exception("could not read the active adapters; serving what is loaded")
                self._refreshed = time.monotonic()
        return self.adapter_for(track)

    def forget(self, track: str) -> None:
        """The target lost the track's adapter (a model server restarted): load it again, whatever the
        registry then says, at the next `current`."""
        with self._lock:
            name = self._serving.pop(track, None)
            self._failed.pop(track, None)
            if name is not None and name in self._resident:
                self._resident.remove(name)
        with self._refresh_lock:
            self._refreshed = -math.inf

    def mark_failed(self, track: str, name: str) -> None:
        """`name` cannot be served for `track` after all: the base model serves it until the retry."""
        with self._lock:
            if self._serving.get(track) == name:
                del self._serving[track]
            self._failed[track] = (name, time.monotonic())

    def refresh(self) -> list[Swap]:
        """Bring the loaded adapters in line with the registry; returns what changed."""
        with self._lock:
            wanted = {
                t: a
                for t, a in active_adapters(self.engine).items()
                if self.tracks is None or t in self.tracks
            }
            for track, (name, _) in list(self._failed.items()):
                if track not in wanted or wanted[track].name != name:
                    del self._failed[track]  # the registry moved on: nothing to retry, nothing to report
            swaps: list[Swap] = []
            for track in sorted(set(wanted) | set(self._serving)):
                row = wanted.get(track)
                new = row.name if row else None
                old = self._serving.get(track)
                if new == old or (new is not None and self._waiting(track, new)):
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
                    self._failed[track] = (new, time.monotonic())
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

    def _waiting(self, track: str, name: str) -> bool:
        """Whether `name` failed to load for `track` and is not due for another try yet."""
        failed = self._failed.get(track)
        if failed is None or failed[0] != name:
            return False
        return self.retry_seconds is None or time.monotonic() - failed[1] < self.retry_seconds

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
