"""Weights: load a base model (optionally 4-bit), attach, switch and remove LoRA adapters, generate.

One `ChatModel` serves every track of a process: adapters are loaded side by side on the same
base weights and selected per request under a lock, so a swap costs milliseconds and two tracks
answering at once each get their own adapter.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.decode import (
    LOOP_WINDOW,
    decode,
    loop_length,
    loop_stop,
    merged_copy,
    plain_generation,
    trim_loop,
)
from finetune.loading import ModelError, load_base, release_free_memory
from finetune.prefix_cache import PrefixCache, prefix_length


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool = False
    # Generation stopped at ``max_time`` before the model finished its answer.
    timed_out: bool = False


def adapter_key(name: str) -> str:
    """peft adapter names become module keys: keep them free of dots and slashes."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


class ChatModel:
    """A base model with any number of named LoRA adapters, one selected per request."""

    def __init__(self, model, tokenizer, name: str):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.adapters: dict[str, str] = {}  # adapter name -> folder
        self._lock = threading.RLock()
        # KV caches of static system prompts, reused across requests (None disables it).
        self.prefix_cache: PrefixCache | None = PrefixCache()
        # Draft tokens taken from the prompt per step for greedy single answers (0: off): one on the
        # served copy (two rows cost about one there; more cost more than they save, finetune/decode.py).
        self.prompt_lookup = 1
        # End a sequence stuck repeating a cycle (a small model's "de la note de la note…").
        self.stop_loops = True
        # Decode single answers with the selected adapter merged into a served copy of the weights
        # (`_served`), in our own loop (finetune/decode.py); False: transformers' generate().
        self.fast_decode = True
        # How the served copy stores its weights (DECODE_WEIGHTS). Prefill runs on the loaded weights.
        self.decode_weights = "bfloat16"
        self._served_model: tuple[tuple, Any] | None = None
        self._adapter_generation = 0  # bumped by every load/remove: a served copy never outlives its adapter
        self.model.eval()

    @classmethod
    def load(cls, name: str, *, load_in_4bit: bool = False, device: str | None = None) -> ChatModel:
        model, tokenizer, _ = load_base(name, load_in_4bit=load_in_4bit, device=device)
        return cls(model, tokenizer, name)

    @property
    def device(self):
        return next(self.model.parameters()).device

    # --- adapters --------------------------------------------------------------------------------
    def load_adapter(self, name: str, path: str | Path) -> None:
        """Attach a PEFT adapter folder under `name` (no-op when already loaded from that folder)."""
        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            raise ModelError(f"adapter {name}: {path} is not a PEFT adapter folder (no adapter_config.json).")
        with self._lock:
            if self.adapters.get(name) == str(path):
                return
            import warnings

            from peft import PeftModel

            # peft calls a transformers method deprecated in v5 on every load; nothing for users to act on.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            key = adapter_key(name)
            if name in self.adapters:
                self.model.delete_adapter(key)
                del self.adapters[name]
                self._forget_served()
            try:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(str(path), adapter_name=key, is_trainable=False)
                else:
                    self.model = PeftModel.from_pretrained(
                        self.model, str(path), adapter_name=key, is_trainable=False
                    )
            except Exception as exc:
                raise ModelError(f"adapter {name} ({path}) cannot be loaded: {exc}") from None
            self.model.eval()
            self.adapters[name] = str(path)
            self._forget_served()

    def remove_adapter(self, name: str) -> None:
        with self._lock:
            if name in self.adapters:
                self.model.delete_adapter(adapter_key(name))
                del self.adapters[name]
                self._forget_served()

    @contextmanager
    def using(self, adapter: str | None):
        """Hold the model with `adapter` selected (None: the bare base model)."""
        with self._lock:
            if adapter is None:
                if self.adapters:
                    with self.model.disable_adapter():
                        yield self.model
                else:
                    yield self.model
                return
            if adapter not in self.adapters:
                raise ModelError(f"adapter {adapter} is not loaded in this process.")
            self.model.set_adapter(adapter_key(adapter))
            yield self.model

    # --- fast decoding ---------------------------------------------------------------------------
    def _forget_served(self) -> None:
        self._served_model = None
        self._adapter_generation += 1

    def _base_model(self):
        get = getattr(self.model, "get_base_model", None)
        return get() if callable(get) else self.model

    def _served(self, adapter: str | None):
        """The plain model that decodes for `adapter` (None: the base): the loaded weights with the
        adapter merged in, stored as `decode_weights` says: a token then costs what it costs the base,
        in half the bytes.
        One copy is kept, rebuilt when another adapter is asked for and dropped when an adapter is
        loaded or removed. None when this model cannot be served so (quantised weights, an adapter
        that does not merge into plain linear weights): the caller then uses generate().
        Called with the lock held."""
        import torch

        base = self._base_model()
        if getattr(base, "hf_quantizer", None) is not None or getattr(base, "is_loaded_in_4bit", False):
            return None
        if base.dtype != torch.float32 or not plain_generation(base):
            return None
        weights = self.decode_weights
        key = (adapter, self.adapters.get(adapter) if adapter else None, self._adapter_generation, weights)
        if self._served_model is not None and self._served_model[0] == key:
            return self._served_model[1]
        self._served_model = None  # the old copy goes before the new one is built
        served = merged_copy(base, adapter_key(adapter) if adapter else None, weights)
        release_free_memory()
        self._served_model = (key, served)
        return served

    def _answer(
        self, messages, ids, adapter, max_new_tokens, temperature, max_time, streamer=None
    ) -> tuple[list[int], bool]:
        """One answer's token ids, and whether the clock cut it."""
        import torch

        with self.using(adapter) as model, torch.inference_mode():
            started = time.monotonic()
            new = self._answer_tokens(
                model,
                messages,
                ids,
                adapter,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                max_time=max_time,
                started=started,
                streamer=streamer,
            )
        return new, self._timed_out(new, max_new_tokens, max_time, started)

    def _answer_tokens(
        self, model, messages, ids, adapter, *, max_new_tokens, temperature, max_time, started, streamer=None
    ) -> list[int]:
        """One answer's token ids, `model` selected and the lock held: our own loop (`decode.decode`:
        prefill on the loaded weights, then each step on the served copy, with one prompt-lookup draft)
        where the model can be served so, else transformers' generate() with the same stops."""
        import torch
        from transformers import DynamicCache

        served = self._served(adapter) if self.fast_decode and max_new_tokens >= 1 else None
        if served is None:
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                streamer=streamer,
                stopping_criteria=self._stops(ids.shape[1]),
                **self._decoding(model, messages, ids, adapter, temperature),
                **self._generate_kwargs(max_new_tokens, temperature, max_time),
            )
            return out[0, ids.shape[1] :].tolist()
        if streamer is not None:
            streamer.put(ids.cpu())  # the prompt, which the streamer skips
        try:
            past = self._cached_prefix(model, messages, ids, adapter).get("past_key_values")
            return decode(
                model,
                served,
                ids,
                past if past is not None else DynamicCache(config=model.config),
                eos=self.tokenizer.eos_token_id,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                draft_tokens=self.prompt_lookup,
                stop=lambda new: self.stop_loops and loop_length(new[-LOOP_WINDOW:]) > 0,
                max_time=max_time,
                started=started,
                streamer=streamer,
            )
        finally:
            if streamer is not None:
                streamer.end()

    # --- prompts and generation ------------------------------------------------------------------
    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _inputs(self, messages, max_prompt_tokens: int | None):
        prompt = self.render(messages)
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        truncated = False
        if max_prompt_tokens and ids.shape[1] > max_prompt_tokens:
            # Keep the end: the question and the generation prompt matter most.
            ids = ids[:, -max_prompt_tokens:]
            truncated = True
        return ids.to(self.device), truncated

    def _generate_kwargs(
        self, max_new_tokens: int, temperature: float, max_time: float | None = None
    ) -> dict:
        kwargs = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if max_time is not None:
            kwargs["max_time"] = max_time  # transformers' MaxTimeCriteria: stop after this many seconds
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=0.95)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _stops(self, prompt_width: int) -> list:
        return [loop_stop(prompt_width)] if self.stop_loops else []

    def _decoding(self, model, messages, ids, adapter: str | None, temperature: float) -> dict:
        """The cached system prefix when there is one, else prompt lookup decoding (the two do not
        combine: assisted generation over a supplied cache gave different text in tests)."""
        cached = self._cached_prefix(model, messages, ids, adapter)
        return cached or self._single_kwargs(temperature)

    def _single_kwargs(self, temperature: float) -> dict:
        """For one sequence decoded greedily: prompt lookup decoding. Answers from retrieved passages
        copy their words, so drafting the next tokens from the prompt and checking several in one
        forward pass (which costs about one token's time: decoding a small model on a CPU is bound
        by reading its weights) gives the same text faster."""
        if temperature > 0 or not self.prompt_lookup:
            return {}
        return {"prompt_lookup_num_tokens": self.prompt_lookup}

    def _cached_prefix(self, model, messages, ids, adapter: str | None) -> dict:
        """generate() kwargs that start from the cached KV of the system prefix, when there is one.
        Called with the model held, so the cache matches the selected adapter."""
        if self.prefix_cache is None:
            return {}
        past = self.prefix_cache.past_for(
            model,
            ids,
            prefix_length(self.tokenizer, messages, ids),
            (adapter, self.adapters.get(adapter) if adapter else None),
        )
        return {} if past is None else {"past_key_values": past}

    def _timed_out(self, new_tokens, max_new_tokens: int, max_time: float | None, started: float) -> bool:
        """Whether generation stopped on the clock: not at the end of the answer, not at the token limit."""
        if max_time is None or time.monotonic() - started < max_time or len(new_tokens) >= max_new_tokens:
            return False
        return len(new_tokens) == 0 or int(new_tokens[-1]) != self.tokenizer.eos_token_id

    def generate(
        self,
        messages: list[dict[str, str]],
        *,
        adapter: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        max_prompt_tokens: int | None = None,
        max_time: float | None = None,
    ) -> Generation:
        """The whole answer; with ``max_time`` (seconds) generation stops there and says so
        (``timed_out``)."""

        ids, truncated = self._inputs(messages, max_prompt_tokens)
        new, timed_out = self._answer(messages, ids, adapter, max_new_tokens, temperature, max_time)
        text = self.tokenizer.decode(trim_loop(new), skip_special_tokens=True).strip()
        return Generation(
            text=text,
            prompt_tokens=int(ids.shape[1]),
            completion_tokens=len(new),
            truncated=truncated,
            timed_out=timed_out,
        )

    def generate_batch(
        self,
        conversations: list[list[dict[str, str]]],
        *,
        adapter: str | None = None,
        max_new_tokens: int = 256,
        max_prompt_tokens: int | None = None,
        batch_size: int = 16,
    ) -> list[Generation]:
        """Greedy answers to many prompts, in order, a batch at a time (left-padded, prompts of similar
        length together so little is computed on padding). On a CPU a batch of 16 decodes in about
        the time of two or three single answers: evaluation and `apprenti eval answers` use this."""
        import torch

        if not conversations:
            return []
        encoded = []
        for messages in conversations:
            ids, truncated = self._inputs(messages, max_prompt_tokens)
            encoded.append((ids[0].cpu(), truncated))
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        results: list[Generation | None] = [None] * len(encoded)
        pad = self.tokenizer.pad_token_id
        kwargs = self._generate_kwargs(max_new_tokens, 0.0)
        for start in range(0, len(order), max(1, batch_size)):
            chunk = order[start : start + batch_size]
            width = max(len(encoded[i][0]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                seq = encoded[i][0]
                ids[row, width - len(seq) :] = seq
                mask[row, width - len(seq) :] = 1
            with self.using(adapter) as model, torch.inference_mode():
                out = model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    stopping_criteria=self._stops(width),
                    **kwargs,
                )
            for row, i in enumerate(chunk):
                new = out[row, width:]
                stop = (new == self.tokenizer.eos_token_id).nonzero()
                if len(stop):
                    new = new[: int(stop[0]) + 1]
                text = self.tokenizer.decode(trim_loop(new.tolist()), skip_special_tokens=True).strip()
                results[i] = Generation(
                    text=text,
                    prompt_tokens=len(encoded[i][0]),
                    completion_tokens=int(new.shape[0]),
                    truncated=encoded[i][1],
                )
        return results  # type: ignore[return-value]

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        adapter: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        max_prompt_tokens: int | None = None,
        max_time: float | None = None,
    ) -> Generator[str, None, bool]:
        """Yield the answer in pieces as it is generated; return True if ``max_time`` cut it."""
        from transformers import TextIteratorStreamer

        ids, _ = self._inputs(messages, max_prompt_tokens)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []
        timed_out: list[bool] = []

        def run():
            try:
                _, cut = self._answer(messages, ids, adapter, max_new_tokens, temperature, max_time, streamer)
                timed_out.append(cut)
            except BaseException as exc:  # re-raised in the consumer's thread
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if errors:
            raise errors[0]
        return bool(timed_out and timed_out[0])
