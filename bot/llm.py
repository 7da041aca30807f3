"""LLM backends behind one interface. A backend never raises for a model failure: the
Completion carries the error so the user is told."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine

from finetune.model import ChatModel
from storage.adapters import active_adapter

log = logging.getLogger("apprenti.llm")


@dataclass
class Completion:
    text: str
    adapter: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: bool = False


class LLM:
    """The interface the assistant uses."""

    def generate(self, messages: list[dict[str, str]], track: str = "default") -> Completion:
        raise NotImplementedError

    def stream(self, messages: list[dict[str, str]], track: str = "default") -> Iterator[str]:
        yield self.generate(messages, track).text


class LocalLLM(LLM):
    """transformers + peft in this process; the track's active adapter is looked up at most every
    `refresh_seconds`, and swapped in without reloading the base model."""

    def __init__(self, model: ChatModel, engine: Engine | None = None, *, max_new_tokens: int = 256,
                 temperature: float = 0.0, max_prompt_tokens: int | None = None, refresh_seconds: float = 2.0):
        self.model = model
        self.engine = engine
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.max_prompt_tokens = max_prompt_tokens
        self.refresh_seconds = refresh_seconds
        self._active: dict[str, tuple[float, str | None]] = {}

    def adapter_for(self, track: str) -> str | None:
        """The active adapter's name for a track (loaded if needed), or None for the base model."""
        if self.engine is None:
            return None
        checked, name = self._active.get(track, (0.0, None))
        if time.monotonic() - checked < self.refresh_seconds:
            return name
        row = active_adapter(self.engine, track)
        name = None
        if row is not None:
            try:
                self.model.load_adapter(row.name, row.path)
                name = row.name
            except Exception as exc:  # noqa: BLE001 - serve the base model rather than nothing
                log.error("active adapter %s cannot be loaded, serving the base model: %s", row.name, exc)
        self._active[track] = (time.monotonic(), name)
        return name

    def generate(self, messages, track="default"):
        adapter = None
        try:
            adapter = self.adapter_for(track)
            out = self.model.generate(messages, adapter=adapter, max_new_tokens=self.max_new_tokens,
                                      temperature=self.temperature, max_prompt_tokens=self.max_prompt_tokens)
        except Exception as exc:  # noqa: BLE001 - the user is told; the bot lives on
            log.exception("local generation failed")
            return Completion(text="", adapter=adapter, error=f"{type(exc).__name__}: {exc}")
        return Completion(text=out.text, adapter=adapter, prompt_tokens=out.prompt_tokens,
                          completion_tokens=out.completion_tokens, truncated=out.truncated)

    def stream(self, messages, track="default"):
        adapter = self.adapter_for(track)
        yield from self.model.stream(messages, adapter=adapter, max_new_tokens=self.max_new_tokens,
                                     temperature=self.temperature, max_prompt_tokens=self.max_prompt_tokens)
