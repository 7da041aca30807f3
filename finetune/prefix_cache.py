"""Reuse the key/value cache of a prompt's static prefix (the system message) across requests.

Every question in a channel starts with the same system prompt (base instructions, tone, format),
often a thousand tokens or more. Its keys and values depend only on those tokens and on the adapter
in use, so they are computed once, kept here, and each request starts from a copy: only the
few-shot examples, the sources and the question go through the model at prefill.

The cache is keyed by the adapter (name and folder, so a retrained adapter never reuses stale
values) and by the exact prefix token ids. Entries are evicted least-recently-used first.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass
class PrefixStats:
    hits: int = 0
    misses: int = 0
    skipped: int = 0


class PrefixCache:
    """Least-recently-used KV caches of prompt prefixes, shared by every request of one model."""

    def __init__(self, max_entries: int = 16, min_tokens: int = 32):
        self.max_entries = max_entries
        # Below this many tokens a prefix is cheaper to recompute than to copy and look up.
        self.min_tokens = min_tokens
        self.stats = PrefixStats()
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def past_for(self, model, ids, prefix_len: int, adapter_key: tuple) -> Any | None:
        """A private copy of the KV cache of `ids[:, :prefix_len]` for `model` as it is selected now
        (computed on a miss), or None when the prefix is too short to be worth caching.

        The caller holds the model (adapter selected) and passes the full `ids` to generate() along
        with the returned cache: generate() then runs only the tokens after the prefix.
        """
        if prefix_len < self.min_tokens or prefix_len >= ids.shape[1]:
            self.stats.skipped += 1
            return None
        prefix = ids[0, :prefix_len]
        key = (adapter_key, str(prefix.device), prefix.cpu().numpy().tobytes())
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                self.stats.hits += 1
        if cached is None:
            cached = self._prefill(model, prefix.unsqueeze(0))
            with self._lock:
                self._entries[key] = cached
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
                self.stats.misses += 1
        # generate() appends to the cache it is given: each request gets its own copy.
        return copy.deepcopy(cached)

    @staticmethod
    def _prefill(model, prefix_ids) -> Any:
        import torch
        from transformers import DynamicCache

        config = getattr(model, "config", None)
        cache = DynamicCache(config=config) if config is not None else DynamicCache()
        with torch.inference_mode():
            model(
                input_ids=prefix_ids,
                attention_mask=torch.ones_like(prefix_ids),
                past_key_values=cache,
                use_cache=True,
            )
        return cache


def prefix_length(tokenizer, messages: list[dict[str, str]], ids) -> int:
    """How many leading tokens of `ids` (the rendered `messages`) are the system message(s) alone.

    Returns 0 when the chat template does not render the system message as a token-exact prefix of
    the whole conversation (some templates inject dates or merge roles): then nothing is cached.
    """
    head = 0
    while head < len(messages) and messages[head].get("role") == "system":
        head += 1
    if head == 0 or head == len(messages):
        return 0
    try:
        text = tokenizer.apply_chat_template(messages[:head], tokenize=False, add_generation_prompt=False)
    except Exception:  # noqa: BLE001 - a template that refuses a system-only chat just means no cache
        return 0
    prefix = tokenizer(text, add_special_tokens=False)["input_ids"]
    n = len(prefix)
    if n == 0 or n >= ids.shape[1] or ids[0, :n].tolist() != prefix:
        return 0
    return n
