"""What an answer looks like in Slack: its Markdown text, then the sources it cites, the mode and
adapter line, Slack's native feedback buttons and the Correct button. A streamed answer carries the
same tail on its final `chat.stopStream`; an answer that cannot be streamed (ephemeral, `/apprenti
ask`, Slack refusing the stream) is sent as `markdown` blocks, never as mrkdwn with literal Markdown."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextActionsBlock,
    ContextBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
    MarkdownBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot import messages as text
from bot.slack.blocks import CORRECT, FEEDBACK, SECTION_LIMIT, SHARE, clip, escape, split_text
from bot.slack.markdown import defuse, to_mrkdwn

# Slack renders at most 12,000 characters of markdown per message (blocks and streamed text alike).
MARKDOWN_LIMIT = 11_000
CITED = re.compile(r"\[\d+\]")


@dataclass
class AnswerView:
    """What an answer message shows; built from an Answer (fresh) or an Interaction row (shared later)."""

    text: str
    interaction_id: int | None
    mode: str = "prompt"
    adapter: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def from_answer(cls, answer) -> AnswerView:
        return cls(
            text=answer.answer,
            interaction_id=answer.interaction_id,
            mode=answer.mode,
            adapter=answer.adapter,
            sources=answer.sources,
            seconds=answer.latency_ms / 1000,
            notices=list(answer.notices),
            error=answer.error,
        )

    @classmethod
    def from_interaction(cls, row) -> AnswerView:
        return cls(
            text=row.answer,
            interaction_id=row.id,
            mode=row.mode,
            adapter=row.adapter_version,
            sources=row.sources or [],
            seconds=(row.latency_ms or 0) / 1000,
            error=row.error,
        )

    @property
    def markdown(self) -> str:
        """The answer as Slack receives it (mentions defused); a hint when the model wrote nothing."""
        return defuse(self.text.strip()) or text.SLACK_EMPTY_ANSWER


# --- citations -----------------------------------------------------------------------------------
def indexed_date(value: Any) -> str | None:
    """A source's last indexing time (epoch seconds, ISO text or datetime) as YYYY-MM-DD."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d")
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d")
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d")
    except (ValueError, OverflowError, OSError):
        return None


def citation(source: dict[str, Any], number: int) -> str:
    """`[n] Title — section · p. 3 · indexed 2026-07-01`, the title linked when the source has a URL."""
    title = escape(clip(source.get("title") or source.get("source") or f"source {number}", 150))
    where = source.get("url") or source.get("source") or ""
    linked = where.startswith(("http://", "https://"))
    head = f"[{number}] <{where}|{title}>" if linked else f"[{number}] *{title}*"
    details = []
    section = source.get("heading") or source.get("section")
    if section:
        details.append(escape(clip(str(section).lstrip("# "), 120)))
    if source.get("page") not in (None, ""):
        details.append(text.SLACK_SOURCE_PAGE.format(page=source["page"]))
    if source.get("kind") == "team_answer":
        approver = str(source.get("approved_by") or "")
        who = (
            f"<@{approver}>" if re.fullmatch(r"[UW][A-Z0-9]{2,}", approver) else escape(clip(approver, 40))
        ) or None
        when = indexed_date(source.get("approved_at"))
        details.append(
            text.SLACK_SOURCE_TEAM_ANSWER_BY.format(who=who, when=when)
            if who and when
            else text.SLACK_SOURCE_TEAM_ANSWER
        )
    elif where and not linked and where != source.get("title"):
        details.append(f"`{escape(clip(where, 200))}`")
    if date := indexed_date(source.get("indexed_at")):
        details.append(text.SLACK_SOURCE_INDEXED.format(date=date))
    return head + (" — " + " · ".join(details) if details else "")


def sources_block(sources: list[dict[str, Any]]) -> SectionBlock | None:
    if not sources:
        return None
    lines = [text.SLACK_SOURCES_TITLE]
    for i, source in enumerate(sources, 1):
        line = citation(source, i)
        if sum(len(x) + 1 for x in lines) + len(line) > SECTION_LIMIT:
            break
        lines.append(line)
    return SectionBlock(text=MarkdownTextObject(text="\n".join(lines)))


def uncited(view: AnswerView) -> bool:
    """A retrieval answer that cites none of its sources (or has none): the reader must be warned.
    A small model reading the plain layout is not asked to cite: Apprenti attaches its one source."""
    if any(s.get("layout") == "plain" for s in view.sources):
        return False
    return view.mode == "rag" and not view.error and (not view.sources or not CITED.search(view.text or ""))


# --- the tail: sources, context line, feedback ------------------------------------------------------
def feedback_block(interaction_id: int) -> ContextActionsBlock:
    value = str(interaction_id)
    return ContextActionsBlock(
        block_id=f"apprenti-feedback:{value}",
        elements=[
            FeedbackButtonsElement(
                action_id=FEEDBACK,
                positive_button=FeedbackButtonObject(
                    text=text.SLACK_BUTTON_UP,
                    value=f"up:{value}",
                    accessibility_label=text.SLACK_FEEDBACK_UP_LABEL,
                ),
                negative_button=FeedbackButtonObject(
                    text=text.SLACK_BUTTON_DOWN,
                    value=f"down:{value}",
                    accessibility_label=text.SLACK_FEEDBACK_DOWN_LABEL,
                ),
            )
        ],
    )


def answer_buttons(interaction_id: int, *, share: bool) -> ActionsBlock:
    value = str(interaction_id)
    elements = [
        ButtonElement(text=PlainTextObject(text=text.SLACK_BUTTON_CORRECT), action_id=CORRECT, value=value)
    ]
    if share:
        elements.append(
            ButtonElement(
                text=PlainTextObject(text=text.SLACK_BUTTON_SHARE),
                action_id=SHARE,
                value=value,
                style="primary",
            )
        )
    return ActionsBlock(block_id=f"apprenti-answer:{value}", elements=elements)


def answer_tail(view: AnswerView, *, ephemeral: bool = False, shared_by: str | None = None) -> list[Block]:
    """The blocks under an answer's text."""
    tail: list[Block] = []
    if shared_by:
        tail.append(
            ContextBlock(elements=[MarkdownTextObject(text=text.SLACK_SHARED_BY.format(user=shared_by))])
        )
    if (block := sources_block(view.sources)) is not None:
        tail.append(block)
    context = [
        text.SLACK_CONTEXT_LINE.format(
            mode=view.mode, adapter=view.adapter or text.SLACK_BASE_MODEL, seconds=view.seconds
        )
    ]
    if uncited(view):
        context.append(text.SLACK_NO_CITATION)
    context += [clip(to_mrkdwn(notice), 2000) for notice in view.notices[:8]]
    tail.append(ContextBlock(elements=[MarkdownTextObject(text=item) for item in context[:10]]))
    if view.interaction_id is not None and not view.error:
        tail.append(feedback_block(view.interaction_id))
        tail.append(answer_buttons(view.interaction_id, share=ephemeral))
    return tail


def fallback_text(markdown: str) -> str:
    """The notification text of an answer message (mrkdwn, so Markdown is converted)."""
    return text.SLACK_ANSWER_FALLBACK.format(preview=clip(to_mrkdwn(markdown), 300))


def answer_messages(view: AnswerView, *, ephemeral: bool = False, shared_by: str | None = None) -> list[dict]:
    """The messages (each {"text", "blocks"}) that carry one answer as `markdown` blocks, in order; the
    last one holds the tail. Every text block's id names the interaction, so the message shortcut can
    find it on any piece."""
    pieces = split_text(view.markdown, MARKDOWN_LIMIT)
    tag = view.interaction_id if view.interaction_id is not None else "none"
    out = []
    for n, piece in enumerate(pieces, 1):
        group: list[Block] = []
        if len(pieces) > 1 and n > 1:
            group.append(
                ContextBlock(
                    elements=[MarkdownTextObject(text=text.SLACK_CONTINUED.format(part=n, total=len(pieces)))]
                )
            )
        group.append(MarkdownBlock(block_id=f"apprenti-text:{tag}:{n - 1}", text=piece))
        if n == len(pieces):
            group += answer_tail(view, ephemeral=ephemeral, shared_by=shared_by)
        out.append({"text": fallback_text(piece), "blocks": [b.to_dict() for b in group]})
    return out
