"""LLM backends behind one interface. A backend never raises for a model failure: the
Completion carries the error so the user is told.

- `LocalLLM`: transformers + peft in this process (finetune.model.ChatModel), the track's active
  adapter selected per request, the system prefix's KV cache reused across requests.
- `OpenAILLM`: any OpenAI-compatible endpoint (vLLM, LoRAX, llama.cpp server...) through
  langchain-openai; the track's active adapter is the served model name, as vLLM serves LoRA modules.

Both stream: `stream()` returns a `Stream` to iterate for text pieces as they are written; once
it is exhausted, `stream.completion` holds the whole answer (or the error), exactly as
`generate()` would have returned it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import Engine

from bot import messages as text
from finetune.hotswap import AdapterWatcher

log = logging.getLogger("apprenti.llm")

# What a cut question shows where its middle was.
ELISION = "\n[…]\n"
# An OpenAI-compatible endpoint does not tell us its tokenizer: without the base model's tokenizer
# here, prompts are measured at about four characters per token, which errs on the long side for
# English and French.
CHARS_PER_TOKEN = 4


@dataclass
class Completion:
    text: str
    adapter: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: bool = False
    # The local model was stopped by APPRENTI_LLM_TIMEOUT before it finished: `text` is the start.
    timed_out: bool = False
    # The messages really sent (after fitting the prompt to the model's limit).
    messages: list[dict[str, str]] | None = None
    # Something the asker should know about how this answer was made (e.g. the base model stood in).
    notice: str | None = None


class Stream:
    """Text pieces as the model writes them; `completion` is set once the iteration ends.

    Iterating never raises for a model failure: the pieces stop and `completion.error` says why.
    """

    def __init__(
        self, pieces: Callable[[], Iterable[str]], finish: Callable[[str, BaseException | None], Completion]
    ):
        self._pieces = pieces
        self._finish = finish
        self._started = False
        self.completion: Completion | None = None

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("a Stream can be iterated once; read .completion afterwards")
        self._started = True
        written: list[str] = []
        failure: BaseException | None = None
        try:
            for piece in self._pieces():
                if piece:
                    written.append(piece)
                    yield piece
        except Exception as exc:  # noqa: BLE001 - reported in the completion, never kills the caller
            failure = exc
        finally:
            # Also when the consumer stops early: what was written so far is the answer.
            self.completion = self._finish("".join(written), failure)

    def result(self) -> Completion:
        """Consume what is left and return the completion."""
        if not self._started:
            for _ in self:
                pass
        return self.completion


def fit_prompt(
    messages: list[dict[str, str]], count: Callable[[list[dict[str, str]]], int], limit: int | None
) -> tuple[list[dict[str, str]], bool]:
    """Make the prompt fit in `limit` tokens, keeping the system prompt (instructions, tone, format).

    Few-shot examples go first (oldest first), then the last user message (question and sources)
    is cut in its middle, keeping its beginning and (more of) its end. Returns the messages and whether
    anything was removed.
    """
    if not limit or count(messages) <= limit:
        return messages, False
    messages = [dict(m) for m in messages]
    head = 0
    while head < len(messages) and messages[head]["role"] == "system":
        head += 1
    # Drop few-shot pairs (user + assistant turns between the system prompt and the question).
    while len(messages) - head > 1 and count(messages) > limit:
        del messages[head : head + 2 if len(messages) - head > 2 else head + 1]
    last = messages[-1]
    for _ in range(8):
        total = count(messages)
        if total <= limit:
            break
        content = last["content"]
        keep = int(len(content) * limit / total * 0.9) - len(ELISION)
        if keep <= 0:
            last["content"] = ""
            break
        # More of the end than of the beginning: a pasted text usually comes before the actual ask.
        head_chars = keep // 3
        last["content"] = content[:head_chars] + ELISION + content[len(content) - (keep - head_chars) :]
    return messages, True


# generate_many's `adapter`: the track's active adapter (the default), or BASE for the bare model.
ACTIVE = "@active"
BASE = "@base"


class LLM:
    """The interface the assistant uses."""

    # Seconds within which an activation or a rollback reaches this backend's answers.
    refresh_seconds: float = 2.0

    def generate(self, messages: list[dict[str, str]], track: str = "default") -> Completion:
        raise NotImplementedError

    def generate_many(
        self, prompts: list[list[dict[str, str]]], track: str = "default", *, adapter: str = ACTIVE
    ) -> list[Completion]:
        """Answers to many prompts, in order (evaluation). `adapter`: ACTIVE, BASE or an adapter
        version's name. Default: one at a time; the local backend batches."""
        if adapter != ACTIVE:
            raise NotImplementedError(f"{type(self).__name__} answers with the active adapter only")
        return [self.generate(p, track) for p in prompts]

    def stream(self, messages: list[dict[str, str]], track: str = "default") -> Stream:
        """Default: one piece, the whole answer (backends that can stream override this)."""
        holder: list[Completion] = []

        def pieces():
            holder.append(self.generate(messages, track))
            yield holder[0].text

        def finish(written, failure):
            if holder:
                return holder[0]
            return Completion(text=written, error=_describe(failure))

        return Stream(pieces, finish)


def _describe(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    return f"{type(exc).__name__}: {exc}"


class ServerAdapters:
    """The adapters an OpenAI-compatible model server (vLLM with `--enable-lora`) holds, as the adapter
    watcher's target (finetune/hotswap.py): loading one asks the server for it (`/load_lora_adapter`)
    unless the server lists it already, then unloads the track's other versions, those another
    replica loaded included; removing one unloads it (`/unload_lora_adapter`)."""

    def __init__(self, base_url: str, *, api_key: str, timeout: float):
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.adapters: set[str] = set()  # what this process loaded or found on the server

    def _request(self, method: str, path: str, **kwargs):
        import httpx

        return httpx.request(
            method,
            f"{self.base_url}{path}",
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=self.timeout,
            **kwargs,
        )

    def models(self) -> set[str]:
        response = self._request("GET", "/models")
        response.raise_for_status()
        return {item.get("id") for item in response.json().get("data", [])}

    def load_adapter(self, name: str, path: str) -> None:
        served = self.models()
        if name not in served:
            response = self._request(
                "POST", "/load_lora_adapter", json={"lora_name": name, "lora_path": path}
            )
            # Another replica may have loaded it between our listing and this request.
            if response.status_code >= 400 and "already" not in response.text.lower():
                raise RuntimeError(
                    f"HTTP {response.status_code}: {response.text[:200]} (start vLLM with --enable-lora and "
                    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or list the adapter in --lora-modules)"
                )
        self.adapters.add(name)
        track = name.rpartition("/v")[0]
        for other in sorted(served):
            if other != name and track and other.startswith(f"{track}/v"):
                self._unload(other)

    def remove_adapter(self, name: str) -> None:
        if name in self.adapters:
            self._unload(name)

    def forget(self, name: str) -> None:
        """The server no longer holds `name` (it restarted)."""
        self.adapters.discard(name)

    def _unload(self, name: str) -> None:
        response = self._request("POST", "/unload_lora_adapter", json={"lora_name": name})
        self.adapters.discard(name)
        if response.status_code >= 400:  # already gone (another replica, a restart): nothing to free
            log.info("unloading %s from %s: HTTP %s", name, self.base_url, response.status_code)
        else:
            log.warning("unloaded retired adapter %s from %s", name, self.base_url)


class LocalLLM(LLM):
    """transformers + peft in this process; the track's active adapter is looked up at most every
    `refresh_seconds`, and swapped in without reloading the base model. ChatModel selects the
    adapter per request under its lock, so tracks served at once each get their own."""

    def __init__(
        self,
        model,
        engine: Engine | None = None,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        max_prompt_tokens: int | None = None,
        refresh_seconds: float = 2.0,
        timeout: float | None = None,
    ):
        self.model = model
        # Generation stops after this many seconds and the answer so far is sent with a notice.
        self.timeout = timeout
        self.engine = engine
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.max_prompt_tokens = max_prompt_tokens
        self.refresh_seconds = refresh_seconds
        # The registry's hot-swap watcher: loads what became active, keeps the last versions and the
        # candidates resident so an activation or a rollback is a pointer switch.
        self.watcher = (
            AdapterWatcher(engine, model, refresh_seconds=refresh_seconds) if engine is not None else None
        )

    def adapter_for(self, track: str) -> str | None:
        """The active adapter's name for a track (loaded if needed), or None for the base model."""
        return self.watcher.current(track) if self.watcher is not None else None

    def _count(self, messages) -> int:
        return self.model.count_tokens(self.model.render(messages))

    def _prepare(self, messages):
        return fit_prompt(messages, self._count, self.max_prompt_tokens)

    def _options(self) -> dict:
        options = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "max_prompt_tokens": self.max_prompt_tokens,
        }
        if self.timeout is not None:
            options["max_time"] = self.timeout
        return options

    def generate(self, messages, track="default"):
        adapter = None
        sent = messages
        try:
            adapter = self.adapter_for(track)
            sent, cut = self._prepare(messages)
            out = self.model.generate(sent, adapter=adapter, **self._options())
        except Exception as exc:  # noqa: BLE001 - the user is told; the bot lives on
            log.exception("local generation failed")
            return Completion(text="", adapter=adapter, error=_describe(exc), messages=sent)
        return Completion(
            text=out.text,
            adapter=adapter,
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion_tokens,
            truncated=cut or out.truncated,
            messages=sent,
            timed_out=out.timed_out,
        )

    def generate_many(self, prompts, track="default", *, adapter=ACTIVE):
        sent = [self._prepare(p) for p in prompts]
        try:
            if adapter == ACTIVE:
                name = self.adapter_for(track)
            elif adapter == BASE:
                name = None
            else:
                name = self.load_version(adapter)
            outs = self.model.generate_batch(
                [messages for messages, _ in sent],
                adapter=name,
                max_new_tokens=self.max_new_tokens,
                max_prompt_tokens=self.max_prompt_tokens,
            )
        except Exception as exc:  # noqa: BLE001 - every answer carries the error
            log.exception("local batch generation failed")
            return [Completion(text="", error=_describe(exc), messages=m) for m, _ in sent]
        return [
            Completion(
                text=o.text,
                adapter=name,
                prompt_tokens=o.prompt_tokens,
                completion_tokens=o.completion_tokens,
                truncated=cut or o.truncated,
                messages=m,
            )
            for o, (m, cut) in zip(outs, sent, strict=True)
        ]

    def load_version(self, name: str) -> str:
        """Load an adapter version from the registry by name (any status but failed) and return it."""
        from finetune.loading import ModelError
        from storage.adapters import get_adapter

        row = get_adapter(self.engine, name) if self.engine is not None else None
        if row is None or not row.path:
            raise ModelError(f"no adapter {name!r} in the registry (see `apprenti adapters list`)")
        self.model.load_adapter(row.name, row.path)
        return row.name

    def stream(self, messages, track="default"):
        state: dict = {"adapter": None, "sent": messages, "cut": False, "timed_out": False}

        def pieces():
            state["adapter"] = self.adapter_for(track)
            state["sent"], state["cut"] = self._prepare(messages)
            timed_out = yield from self.model.stream(
                state["sent"], adapter=state["adapter"], **self._options()
            )
            state["timed_out"] = bool(timed_out)

        def finish(written, failure):
            if failure is not None:
                log.error("local streaming failed: %s", failure)
            prompt_tokens = completion_tokens = 0
            try:
                prompt_tokens = self._count(state["sent"])
                completion_tokens = self.model.count_tokens(written)
            except Exception:  # noqa: BLE001 - the counts are informative only
                pass
            return Completion(
                text=written.strip(),
                adapter=state["adapter"],
                error=_describe(failure),
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                truncated=state["cut"],
                messages=state["sent"],
                timed_out=state["timed_out"],
            )

        return Stream(pieces, finish)


class OpenAILLM(LLM):
    """An OpenAI-compatible chat-completions endpoint (vLLM with `--enable-lora`, for instance).

    The served model name is the track's active adapter (`track/vN`, loaded into the server through
    vLLM's `/load_lora_adapter` when the server does not list it yet) or, with no adapter, `model`.
    When the active version changes, the track's other versions are unloaded from the server
    (`/unload_lora_adapter`), so retired adapters do not hold its memory.

    A restarted server has forgotten its runtime adapters and answers "model not found": the
    registry is read again, the active adapter reloaded and the request retried once; if the
    adapter still cannot be served, the base model answers and the completion carries a notice.
    Timeouts, refused connections and HTTP errors come back as a Completion with `error` set.

    Prompts are measured with `tokenizer`'s tokenizer (the base model's: bundled name, folder or hub
    id), loaded on first use and alone, without the weights; without one, or if it cannot be
    loaded here, at about CHARS_PER_TOKEN characters per token.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str = "not-needed",
        engine: Engine | None = None,
        timeout: float = 60.0,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        max_prompt_tokens: int | None = None,
        refresh_seconds: float = 2.0,
        tokenizer: str | None = None,
    ):
        if not base_url:
            raise ValueError("the openai backend needs a base URL (APPRENTI_OPENAI_BASE_URL)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.max_prompt_tokens = max_prompt_tokens
        self.refresh_seconds = refresh_seconds
        self.server = ServerAdapters(self.base_url, api_key=api_key, timeout=timeout)
        # The registry's watcher (the local backend's too), here loading into the model server: retired
        # versions are unloaded at once, and a version the server refused is tried again after a while.
        self.watcher = (
            AdapterWatcher(
                engine,
                self.server,
                keep_loaded=0,
                preload_candidates=False,
                refresh_seconds=refresh_seconds,
                retry_seconds=refresh_seconds,
            )
            if engine is not None
            else None
        )
        self._clients: dict[str, object] = {}
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self.tokenizer_name = tokenizer
        self._tokenizer_state: tuple[bool, object | None] = (False, None)  # (tried, tokenizer)

    # --- which model the server should run ------------------------------------------------------
    def _choose(self, track: str) -> tuple[str | None, str | None]:
        """(served adapter or None, notice) for a track, the server brought in line with the registry."""
        if self.watcher is None:
            return None, None
        with self._sync_lock:
            name = self.watcher.current(track)
            failed = self.watcher.failed_for(track)
        if name is None and failed is not None:
            return None, text.ADAPTER_NOT_SERVED.format(adapter=failed)
        return name, None

    def _attempts(self, track: str) -> Iterator[tuple[str | None, str | None]]:
        """The (adapter, notice) choices to try in turn while the server answers "model not found": the
        adapter last seen; then, the server having been restarted, the active one read again and
        reloaded; last, the base model with a notice."""
        adapter, notice = self._choose(track)
        yield adapter, notice
        if adapter is None:
            return
        log.warning(
            "the model server %s does not know %s (restarted?): reloading the active adapter",
            self.base_url,
            adapter,
        )
        self.server.forget(adapter)
        self.watcher.forget(track)
        adapter, notice = self._choose(track)
        yield adapter, notice
        if adapter is not None:
            log.error(
                "adapter %s is still unknown to %s after reloading it; serving the base model",
                adapter,
                self.base_url,
            )
            self.watcher.mark_failed(track, adapter)
            yield None, text.ADAPTER_NOT_SERVED.format(adapter=adapter)

    def adapter_for(self, track: str) -> str | None:
        """The served adapter name for a track (loaded into the server if needed), or None."""
        return self._choose(track)[0]

    def _client(self, model: str, streaming: bool = False):
        key = f"{model}\0{streaming}"
        with self._lock:
            if key not in self._clients:
                from langchain_openai import ChatOpenAI

                self._clients[key] = ChatOpenAI(
                    model=model,
                    base_url=self.base_url,
                    api_key=self.api_key,
                    timeout=self.timeout,
                    max_retries=0,  # a retry would double the wait the user was promised
                    max_tokens=self.max_new_tokens,
                    temperature=self.temperature,
                    streaming=streaming,
                    stream_usage=streaming,
                )
            return self._clients[key]

    # --- measuring prompts ----------------------------------------------------------------------
    @staticmethod
    def load_tokenizer(name: str):
        """The tokenizer of a bundled model (its converted folder, else straight from the GGUF file),
        a model folder or a hub id in the local cache; never the weights."""
        from huggingface_hub import constants
        from transformers import AutoTokenizer

        from finetune import bundled

        if bundled.is_bundled(name):
            folder = bundled.folder_for(name)
            if bundled.complete(folder):
                return AutoTokenizer.from_pretrained(str(folder))
            source = bundled.BUNDLED[name.strip().lower()].gguf_path()
            return AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        return AutoTokenizer.from_pretrained(name, local_files_only=constants.HF_HUB_OFFLINE)

    def tokenizer(self):
        """The base model's tokenizer, loaded once on first use; None if there is none to load here."""
        tried, tokenizer = self._tokenizer_state
        if tried or self.tokenizer_name is None:
            return tokenizer
        with self._lock:
            if not self._tokenizer_state[0]:
                try:
                    tokenizer = self.load_tokenizer(self.tokenizer_name)
                except Exception as exc:  # noqa: BLE001 - measuring falls back to the estimate
                    log.warning(
                        "tokenizer of %s not loadable here (%s): prompts are measured at %d characters "
                        "per token",
                        self.tokenizer_name,
                        exc,
                        CHARS_PER_TOKEN,
                    )
                    tokenizer = None
                self._tokenizer_state = (True, tokenizer)
            return self._tokenizer_state[1]

    @staticmethod
    def _estimate(messages) -> int:
        return sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN + 4 * len(messages)

    def _count(self, messages) -> int:
        """Prompt tokens as the server will count them: the chat template applied, then tokenized."""
        tokenizer = self.tokenizer()
        if tokenizer is None:
            return self._estimate(messages)
        try:
            if tokenizer.chat_template:
                rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            else:
                rendered = "\n".join(m["content"] for m in messages)
            return len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        except Exception:  # noqa: BLE001 - a template that rejects these messages: estimate
            return self._estimate(messages)

    def _prepare(self, messages):
        return fit_prompt(messages, self._count, self.max_prompt_tokens)

    def _error(self, exc: BaseException) -> str:
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return text.LLM_TIMEOUT.format(seconds=f"{self.timeout:g}")
        if isinstance(exc, openai.APIConnectionError):
            return text.LLM_UNREACHABLE.format(url=self.base_url)
        if isinstance(exc, openai.APIStatusError):
            detail = getattr(exc, "message", None) or str(exc)
            return text.LLM_HTTP_ERROR.format(status=exc.status_code, detail=detail[:300])
        return _describe(exc)

    @staticmethod
    def _usage(message) -> tuple[int, int]:
        usage = getattr(message, "usage_metadata", None) or {}
        return int(usage.get("input_tokens", 0) or 0), int(usage.get("output_tokens", 0) or 0)

    def generate(self, messages, track="default"):
        import openai

        adapter = notice = None
        sent = messages
        try:
            sent, cut = self._prepare(messages)
            unknown: openai.NotFoundError | None = None
            for choice in self._attempts(track):
                adapter, notice = choice
                try:
                    reply = self._client(adapter or self.model).invoke(
                        [(m["role"], m["content"]) for m in sent]
                    )
                    break
                except openai.NotFoundError as exc:
                    unknown = exc
            else:
                raise unknown
        except Exception as exc:  # noqa: BLE001 - the user is told; the bot lives on
            log.warning("OpenAI-compatible backend failed: %r", exc)
            return Completion(text="", adapter=adapter, error=self._error(exc), messages=sent, notice=notice)
        prompt_tokens, completion_tokens = self._usage(reply)
        return Completion(
            text=str(reply.content).strip(),
            adapter=adapter,
            prompt_tokens=prompt_tokens or self._count(sent),
            completion_tokens=completion_tokens,
            truncated=cut,
            messages=sent,
            notice=notice,
        )

    def stream(self, messages, track="default"):
        state: dict = {"adapter": None, "notice": None, "sent": messages, "cut": False, "usage": (0, 0)}

        def attempt(adapter):
            client = self._client(adapter or self.model, streaming=True)
            for chunk in client.stream([(m["role"], m["content"]) for m in state["sent"]]):
                usage = self._usage(chunk)
                if any(usage):
                    state["usage"] = usage
                if chunk.content:
                    yield str(chunk.content)

        def pieces():
            import openai

            state["sent"], state["cut"] = self._prepare(messages)
            unknown: openai.NotFoundError | None = None
            for state["adapter"], state["notice"] in self._attempts(track):
                try:
                    # "Model not found" comes as the response to the request, before any piece.
                    yield from attempt(state["adapter"])
                    return
                except openai.NotFoundError as exc:
                    unknown = exc
            raise unknown

        def finish(written, failure):
            if failure is not None:
                log.warning("OpenAI-compatible streaming failed: %r", failure)
            return Completion(
                text=written.strip(),
                adapter=state["adapter"],
                error=self._error(failure) if failure is not None else None,
                prompt_tokens=state["usage"][0] or self._count(state["sent"]),
                completion_tokens=state["usage"][1],
                truncated=state["cut"],
                messages=state["sent"],
                notice=state["notice"],
            )

        return Stream(pieces, finish)


def make_llm(settings, engine: Engine | None, chat_model: Callable[[], object]) -> LLM:
    """The backend named by APPRENTI_LLM_BACKEND. `chat_model` loads the local model when needed."""
    common = {
        "max_new_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "max_prompt_tokens": settings.max_prompt_tokens,
    }
    if settings.llm_backend == "openai":
        return OpenAILLM(
            settings.openai_base_url,
            model=settings.openai_model or settings.base_model,
            api_key=settings.openai_api_key,
            engine=engine,
            timeout=settings.llm_timeout,
            tokenizer=settings.base_model,
            **common,
        )
    return LocalLLM(chat_model(), engine, timeout=settings.llm_timeout, **common)
