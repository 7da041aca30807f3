"""The answer pipeline: profile → retrieval → few-shot → system prompt → LLM → format → store."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine

from bot import messages as text
from bot.llm import ACTIVE, LLM
from bot.metrics import observe_answer
from bot.profiles import Profiles
from finetune.dataset import user_message
from plugins.pii import scrub
from plugins.profile import Profile
from rag.focus import focus
from storage.interactions import add_interaction

log = logging.getLogger("apprenti.assistant")

MODES = ("prompt", "rag", "auto")
# A team entry this close to the best document passage's score is about the same thing, and newer.
TEAM_MARGIN = 0.15


@dataclass
class Answer:
    answer: str
    mode: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    adapter: str | None = None
    interaction_id: int | None = None
    prompt: list[dict[str, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    format_violations: list[str] = field(default_factory=list)
    track: str = "default"
    latency_ms: int = 0
    error: str | None = None
    profile: Profile | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("profile")
        return data


def _flatten(results) -> list:
    return [item for result in results if result for item in result]


# How retrieved passages reach the model, chosen per model (APPRENTI_PROMPT_LAYOUT):
# - "numbered": the sources numbered with their titles and an instruction to cite them, for models
#   that can follow it;
# - "plain": the passage text alone, cut to the sentences that bear on the question, for small
#   models, which answer from the right passage when it is short and unadorned (measured in
#   docs/benchmarks.md). The citations are attached from the retrieval side either way.
LAYOUTS = ("numbered", "plain")
# Passage fields a source carries through to the citation when retrieval provides them.
SOURCE_DETAILS = (
    "heading",
    "page",
    "collection",
    "url",
    "indexed_at",
    "layout",
    # a team answer: which approved correction, on which question, approved by whom and when
    "example_id",
    "question",
    "approved_by",
    "approved_at",
)


# Words a retrieved passage could use to pass itself off as part of the prompt ("Question: …",
# "System: …", "</source>"): passages are data written by anyone who can edit a document, never
# instructions, so these are neutralised before the model reads them.
_PROMPT_MARKERS = re.compile(
    r"\b(question|texte?|answer|context|system|assistant|user|instructions?|r[ée]ponse|consignes?)\s*:",
    re.IGNORECASE,
)
_FENCE = re.compile(r"</?\s*sources?\b[^>]*>", re.IGNORECASE)


def untrusted(passage: str, *, one_line: bool = False) -> str:
    """A retrieved passage as the model may read it: no prompt markers ("Question:" becomes
    "Question -"), no source fences, and for the plain layout on one line, so it cannot open a
    turn of its own."""
    cleaned = _FENCE.sub(" ", passage or "")
    cleaned = _PROMPT_MARKERS.sub(lambda m: f"{m.group(1)} -", cleaned)
    return " ".join(cleaned.split()) if one_line else cleaned.strip()


def source_block(passages: list[dict[str, Any]]) -> str:
    """The numbered layout: each source fenced, so the model (and the instructions) can tell the
    retrieved data from the question."""
    lines = []
    for i, passage in enumerate(passages, 1):
        title = untrusted(passage.get("title") or passage.get("source") or f"source {i}", one_line=True)
        body = untrusted(passage.get("text") or passage.get("snippet") or "")
        lines.append(f'<source id="{i}" title="{title}">\n{body}\n</source>')
    return "\n\n".join(lines)


def context_text(passages: list[dict[str, Any]]) -> str | None:
    """The retrieved context as the model reads it. A passage says which layout it was read in
    (``layout``, numbered when absent); a correction rebuilds this very text from the stored
    sources, so training sees what serving showed."""
    if not passages:
        return None
    if passages[0].get("layout") == "plain":
        return "\n\n".join(
            untrusted(p.get("text") or p.get("snippet") or "", one_line=True) for p in passages
        )
    return f"{text.RAG_INSTRUCTIONS}\n\n{source_block(passages)}"


def base_system_prompt(layout: str = "numbered") -> str:
    # A small model told it is "Apprenti, the team's assistant" answers in character instead of
    # answering ("What is the capital of France?" -> "L'Alma, la France"): it gets a plain assistant.
    return text.SMALL_MODEL_SYSTEM_PROMPT if layout == "plain" else text.BASE_SYSTEM_PROMPT


def system_prompt(pm, profile: Profile, question: str = "", layout: str = "numbered") -> str:
    """Apprenti's base instructions plus every plugin's (tone, format...). Static per profile, so
    its key/value cache can be reused across requests, and training uses the very same text."""
    parts = [base_system_prompt(layout)]
    parts += [p for p in pm.hook.system_prompt(profile=profile, question=question) if p]
    return "\n\n".join(parts)


class Assistant:
    def __init__(
        self,
        engine: Engine,
        pm,
        llm: LLM,
        profiles: Profiles | None = None,
        *,
        rag_k: int = 5,
        rag_threshold: float = 0.35,
        fewshot_k: int = 3,
        layout: str = "numbered",
        plain_passages: int = 1,
        plain_chars: int = 160,
        team_answer_threshold: float = 0.6,
        team_answer_min: float = 0.3,
        team_answer_k: int = 2,
    ):
        if layout not in LAYOUTS:
            raise ValueError(f"prompt layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
        self.layout = layout
        # The plain layout shows the model this many passages, each cut to this many characters.
        self.plain_passages = plain_passages
        self.plain_chars = plain_chars
        self.engine = engine
        self.pm = pm
        self.llm = llm
        self.profiles = profiles or Profiles()
        self.rag_k = rag_k
        self.rag_threshold = rag_threshold
        self.fewshot_k = fewshot_k
        # A team knowledge entry scoring at least this comes before every document passage.
        self.team_answer_threshold = team_answer_threshold
        # ...and one scoring at least this, within TEAM_MARGIN of the best document passage, too.
        self.team_answer_min = team_answer_min
        self.team_answer_k = team_answer_k

    # --- the stages -----------------------------------------------------------------------------
    def _team_answers(self, question: str, profile: Profile) -> list[dict]:
        """The team's knowledge entries close to this question (approved fact corrections), best
        first: searched in every mode unless the profile opts out, since a corrected fact must
        answer the next person at once."""
        if not self.team_answer_k or not profile.team_answers:
            return []
        try:
            found = _flatten(
                self.pm.hook.team_answers(question=question, profile=profile, k=self.team_answer_k)
            )
        except Exception:  # noqa: BLE001 - the documents and the model still answer
            log.exception("team answers are unavailable for this question")
            return []
        found = [{**p, "kind": "team_answer"} for p in found if p.get("score", 0.0) >= self.team_answer_min]
        return sorted(found, key=lambda p: p.get("score", 0.0), reverse=True)[: self.team_answer_k]

    def _retrieve(
        self, question: str, profile: Profile, mode: str, notices: list[str]
    ) -> tuple[str, list[dict]]:
        """Which mode really applies, and the passages to cite: team answers first, then documents.

        A team entry answers when it scores at least `team_answer_threshold` on its own, or at least
        `team_answer_min` and within TEAM_MARGIN of the best document passage: it is then about what
        that passage says, and it is newer (a person corrected it), so it comes first."""
        team = self._team_answers(question, profile)
        passages: list[dict] = []
        if mode != "prompt":
            try:
                passages = _flatten(self.pm.hook.retrieve(question=question, profile=profile, k=self.rag_k))
            except Exception as exc:  # noqa: BLE001 - an index failure must not cost the user an answer
                log.exception("retrieval failed")
                if not team:
                    notices.append(text.INDEX_DOWN.format(error=exc))
                    return "prompt", []
            passages = sorted(passages, key=lambda p: p.get("score", 0.0), reverse=True)[: self.rag_k]
        best_document = passages[0].get("score", 0.0) if passages else None
        team = [
            p
            for p in team
            if p["score"] >= self.team_answer_threshold
            or (best_document is not None and p["score"] >= best_document - TEAM_MARGIN)
        ]
        if mode == "auto":
            passages = [p for p in passages if p.get("score", 0.0) >= self.rag_threshold]
        passages = (team + passages)[: max(self.rag_k, len(team))]
        if not passages:
            if mode != "prompt":
                notices.append(text.NO_SOURCE)
            return "prompt", []
        if self.layout == "plain":
            passages = [
                {**p, "text": focus(p.get("text") or "", question, self.plain_chars), "layout": "plain"}
                for p in passages[: self.plain_passages]
            ]
        return "rag", passages

    def build_prompt(self, question: str, profile: Profile, passages: list[dict]) -> list[dict[str, str]]:
        prompt = [{"role": "system", "content": system_prompt(self.pm, profile, question, self.layout)}]
        if self.fewshot_k:
            try:
                shots = _flatten(
                    self.pm.hook.fewshot_examples(question=question, profile=profile, k=self.fewshot_k)
                )
            except Exception:  # noqa: BLE001 - examples help an answer; their absence must not prevent it
                log.exception("few-shot examples failed")
                shots = []
            shots = sorted(shots, key=lambda s: s.get("score", 0.0), reverse=True)
            for shot in shots[: self.fewshot_k]:
                prompt.append({"role": "user", "content": shot["question"]})
                prompt.append({"role": "assistant", "content": shot["answer"]})
        # The same layout as a training record's user turn (finetune.dataset.user_message).
        prompt.append({"role": "user", "content": user_message(question, context_text(passages))})
        return prompt

    def _result(
        self,
        completion,
        prompt,
        profile: Profile,
        used_mode: str,
        passages: list[dict],
        notices: list[str],
        started: float,
    ) -> Answer:
        """The Answer for a completion: format repaired and checked, sources attached."""
        prompt = completion.messages or prompt
        if completion.truncated:
            notices.append(text.TRUNCATED.format(tokens=completion.prompt_tokens))
        if completion.timed_out:
            notices.append(text.ANSWER_TIMED_OUT)
        if completion.notice:
            notices.append(completion.notice)
        if completion.error:
            # The backend's error can hold a URL, a path or a stack's words: the log gets it, the person
            # an id.
            error_id = secrets.token_hex(4)
            log.error("the model failed [error %s]: %s", error_id, completion.error)
            answer_text = text.MODEL_FAILED.format(error_id=text.ERROR_ID.format(id=error_id))
            violations: list[str] = []
        else:
            answer_text = completion.text
            repaired = self.pm.hook.format_answer(answer=answer_text, profile=profile)
            if repaired is not None:
                answer_text = repaired
            violations = _flatten(self.pm.hook.check_format(answer=answer_text, profile=profile))
        sources = [
            {
                "title": p.get("title") or p.get("source"),
                "source": p.get("source"),
                "score": round(float(p.get("score", 0.0)), 4),
                "snippet": p.get("snippet") or p["text"][:200],
                "kind": p.get("kind", "document"),
                # Where in the document, and how the model read it (plain: cited by Apprenti, not inline).
                **{k: p[k] for k in SOURCE_DETAILS if p.get(k) is not None},
            }
            for p in passages
        ]
        return Answer(
            answer=answer_text,
            mode=used_mode,
            sources=sources,
            adapter=completion.adapter,
            prompt=prompt,
            notices=notices,
            format_violations=violations,
            track=profile.track,
            error=completion.error,
            profile=profile,
            latency_ms=int((time.perf_counter() - started) * 1000),
        )

    def answer_many(
        self,
        questions: list[str],
        *,
        channel: str | None = None,
        mode: str | None = None,
        adapter: str = ACTIVE,
    ) -> list[Answer]:
        """Answers to many questions, in order, generated in batches and not stored (evaluation).
        `adapter`: the track's active adapter (ACTIVE), the bare model (BASE) or a version's name."""
        started = time.perf_counter()
        profile = self.profiles.for_channel(channel)
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        staged = []
        for question in questions:
            notices: list[str] = []
            used_mode, passages = self._retrieve(question.strip(), profile, mode or profile.mode, notices)
            staged.append(
                (self.build_prompt(question.strip(), profile, passages), used_mode, passages, notices)
            )
        completions = self.llm.generate_many(
            [prompt for prompt, *_ in staged], track=profile.track, adapter=adapter
        )
        return [
            self._result(c, prompt, profile, used_mode, passages, notices, started)
            for c, (prompt, used_mode, passages, notices) in zip(completions, staged, strict=True)
        ]

    # --- the pipeline ---------------------------------------------------------------------------
    def answer(
        self,
        question: str,
        *,
        channel: str | None = None,
        user: str | None = None,
        thread: str | None = None,
        mode: str | None = None,
        team: str | None = None,
        message_ts: str | None = None,
        store: bool = True,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer a question through the channel's profile. With `on_text`, the answer is streamed:
        on_text receives the text written so far after each piece (the Slack face edits its message);
        the returned Answer holds the final, format-repaired text."""
        started = time.perf_counter()
        profile = self.profiles.for_channel(channel)
        question = (question or "").strip()
        if not question:
            return Answer(answer=text.EMPTY_QUESTION, mode="none", track=profile.track, profile=profile)
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        notices: list[str] = []
        used_mode, passages = self._retrieve(question, profile, mode or profile.mode, notices)
        prompt = self.build_prompt(question, profile, passages)

        if on_text is None:
            completion = self.llm.generate(prompt, track=profile.track)
        else:
            stream = self.llm.stream(prompt, track=profile.track)
            written = ""
            for piece in stream:
                written += piece
                try:
                    on_text(written)
                except Exception:  # noqa: BLE001 - a failed live update must not lose the answer
                    log.exception("on_text callback failed")
            completion = stream.completion
        result = self._result(completion, prompt, profile, used_mode, passages, notices, started)
        answer_text, violations, sources = result.answer, result.format_violations, result.sources
        if store:
            # The passages' text is kept (scrubbed) so a correction can rebuild the exact context.
            # Passages are quoted documents: their text, title and snippet are masked like the question.
            stored = [
                {
                    **src,
                    "text": scrub(self.pm, p.get("text") or ""),
                    "title": scrub(self.pm, src.get("title")),
                    "snippet": scrub(self.pm, src.get("snippet")),
                }
                for src, p in zip(sources, passages, strict=True)
            ]
            row = add_interaction(
                self.engine,
                team_id=team,
                channel_id=channel,
                thread_ts=thread,
                message_ts=message_ts,
                user_id=user,
                question=scrub(self.pm, question),
                answer=scrub(self.pm, answer_text),
                mode=used_mode,
                track=profile.track,
                sources=stored,
                adapter_version=completion.adapter,
                latency_ms=result.latency_ms,
                format_violations=violations,
                error=scrub(self.pm, completion.error),
            )
            result.interaction_id = row.id
        observe_answer(result, time.perf_counter() - started)
        return result
