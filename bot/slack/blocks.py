"""Block Kit for every message and view, built from slack_sdk.models.blocks so Slack's limits are
checked (`to_dict()` validates) before anything is sent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot import messages as text

SECTION_LIMIT = 2900  # Slack allows 3000 characters per section; keep room for escaping
SECTIONS_PER_MESSAGE = 4  # ~12k characters a message, far under the 50-block and 40k-text limits
INPUT_LIMIT = 3000  # plain_text_input values

# action and view ids (the roles middleware maps each to a capability)
VOTE_UP, VOTE_DOWN, CORRECT, SHARE = "answer_vote_up", "answer_vote_down", "answer_correct", "answer_share"
APPROVE, EDIT_APPROVE, REJECT = "review_approve", "review_edit", "review_reject"
RETRAIN, ROLLBACK, ACTIVATE, DISCARD = "admin_retrain", "admin_rollback", "admin_activate", "admin_discard"
CORRECTION_VIEW, EDIT_VIEW = "correction_modal", "review_edit_modal"
CORRECT_SHORTCUT = "correct_message"
ANSWER_BLOCK, NOTE_BLOCK, INPUT_ACTION = "answer", "note", "value"


def escape(value: str | None) -> str:
    """Slack's three control characters, so model output cannot ping @channel or forge links."""
    return (value or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(value: str | None, limit: int) -> str:
    value = value or ""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def split_text(value: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Cut text into pieces under `limit`, at a paragraph, line, sentence or word boundary when possible."""
    value = value.strip()
    pieces: list[str] = []
    while len(value) > limit:
        window = value[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"))
        if cut < limit // 2:
            cut = max(window.rfind(". "), window.rfind(" "))
            cut = cut + 1 if cut >= limit // 2 else limit
        pieces.append(value[:cut].rstrip())
        value = value[cut:].lstrip()
    if value:
        pieces.append(value)
    return pieces or [""]


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
        return cls(text=answer.answer, interaction_id=answer.interaction_id, mode=answer.mode, adapter=answer.adapter,
                   sources=answer.sources, seconds=answer.latency_ms / 1000, notices=list(answer.notices),
                   error=answer.error)

    @classmethod
    def from_interaction(cls, row) -> AnswerView:
        return cls(text=row.answer, interaction_id=row.id, mode=row.mode, adapter=row.adapter_version,
                   sources=row.sources or [], seconds=(row.latency_ms or 0) / 1000, error=row.error)


def _link(source: dict[str, Any], number: int) -> str:
    title = escape(clip(source.get("title") or source.get("source") or f"source {number}", 150))
    where = source.get("source") or ""
    if where.startswith(("http://", "https://")):
        return f"[{number}] <{where}|{title}>"
    if where and where != source.get("title"):
        return f"[{number}] {title} — `{escape(clip(where, 200))}`"
    return f"[{number}] {title}"


def sources_block(sources: list[dict[str, Any]]) -> SectionBlock | None:
    if not sources:
        return None
    lines = [text.SLACK_SOURCES_TITLE]
    for i, source in enumerate(sources, 1):
        line = _link(source, i)
        if sum(len(x) + 1 for x in lines) + len(line) > SECTION_LIMIT:
            break
        lines.append(line)
    return SectionBlock(text=MarkdownTextObject(text="\n".join(lines)))


def answer_buttons(interaction_id: int, *, share: bool) -> ActionsBlock:
    value = str(interaction_id)
    elements = [
        ButtonElement(text=PlainTextObject(text=text.SLACK_BUTTON_UP, emoji=True), action_id=VOTE_UP, value=value),
        ButtonElement(text=PlainTextObject(text=text.SLACK_BUTTON_DOWN, emoji=True), action_id=VOTE_DOWN, value=value),
        ButtonElement(text=PlainTextObject(text=text.SLACK_BUTTON_CORRECT), action_id=CORRECT, value=value),
    ]
    if share:
        elements.append(ButtonElement(text=PlainTextObject(text=text.SLACK_BUTTON_SHARE), action_id=SHARE,
                                      value=value, style="primary"))
    return ActionsBlock(block_id=f"apprenti-answer:{value}", elements=elements)


def answer_messages(view: AnswerView, *, ephemeral: bool = False, shared_by: str | None = None) -> list[dict]:
    """The messages (each {"text", "blocks"}) that carry one answer, in order. The last one holds the
    sources, the context line and the buttons. Every section's block_id names the interaction, so the
    message shortcut can find it on any piece."""
    body = view.text.strip() or text.SLACK_EMPTY_ANSWER
    pieces = split_text(escape(body))
    tag = view.interaction_id if view.interaction_id is not None else "none"
    sections = [SectionBlock(block_id=f"apprenti-text:{tag}:{i}", text=MarkdownTextObject(text=piece))
                for i, piece in enumerate(pieces)]
    groups = [sections[i:i + SECTIONS_PER_MESSAGE] for i in range(0, len(sections), SECTIONS_PER_MESSAGE)]
    tail: list = []
    if shared_by:
        tail.append(ContextBlock(elements=[MarkdownTextObject(text=text.SLACK_SHARED_BY.format(user=shared_by))]))
    if (block := sources_block(view.sources)) is not None:
        tail.append(block)
    context = [text.SLACK_CONTEXT_LINE.format(mode=view.mode, adapter=view.adapter or text.SLACK_BASE_MODEL,
                                              seconds=view.seconds)]
    context += [clip(escape(notice), 2000) for notice in view.notices[:8]]
    tail.append(ContextBlock(elements=[MarkdownTextObject(text=item) for item in context]))
    if view.interaction_id is not None and not view.error:
        tail.append(answer_buttons(view.interaction_id, share=ephemeral))
    groups[-1] = groups[-1] + tail
    out = []
    for n, group in enumerate(groups, 1):
        if len(groups) > 1 and n > 1:
            group = [ContextBlock(elements=[MarkdownTextObject(
                text=text.SLACK_CONTINUED.format(part=n, total=len(groups)))])] + group
        preview = clip(pieces[0] if n == 1 else body, 300)
        out.append({"text": text.SLACK_ANSWER_FALLBACK.format(preview=preview),
                    "blocks": [b.to_dict() for b in group]})
    return out


LIVE_BLOCK = "apprenti-live"


def live_message(written: str) -> dict:
    """The answer as it is being written (streaming); replaced by the full answer message at the end."""
    body = clip(escape(written.strip()), SECTION_LIMIT - 2) + " …"
    return {"text": text.SLACK_ANSWER_FALLBACK.format(preview=clip(written, 300)),
            "blocks": [SectionBlock(block_id=LIVE_BLOCK, text=MarkdownTextObject(text=body)).to_dict()]}


def notice_message(message: str) -> dict:
    return {"text": message, "blocks": [SectionBlock(text=MarkdownTextObject(text=clip(message, SECTION_LIMIT))).to_dict()]}


def interaction_id_from_blocks(blocks: list[dict] | None) -> int | None:
    """The interaction an answer message belongs to, read from its block ids."""
    for block in blocks or []:
        block_id = block.get("block_id") or ""
        if block_id.startswith(("apprenti-answer:", "apprenti-text:")):
            raw = block_id.split(":")[1]
            if raw.isdigit():
                return int(raw)
    return None


# --- modals --------------------------------------------------------------------------------------
def _answer_input(label: str, initial: str, hint: str | None = None) -> InputBlock:
    return InputBlock(
        block_id=ANSWER_BLOCK,
        label=PlainTextObject(text=label),
        hint=PlainTextObject(text=hint) if hint else None,
        element=PlainTextInputElement(action_id=INPUT_ACTION, multiline=True, max_length=INPUT_LIMIT,
                                      initial_value=clip(initial, INPUT_LIMIT)),
    )


def correction_modal(question: str, answer: str, metadata: dict[str, Any]) -> dict:
    blocks = [
        SectionBlock(text=MarkdownTextObject(text=text.SLACK_CORRECT_QUESTION.format(
            question=clip(escape(question), SECTION_LIMIT - 20)))),
        _answer_input(text.SLACK_CORRECT_ANSWER_LABEL, answer, text.SLACK_CORRECT_ANSWER_HINT),
        InputBlock(block_id=NOTE_BLOCK, optional=True, label=PlainTextObject(text=text.SLACK_CORRECT_NOTE_LABEL),
                   element=PlainTextInputElement(action_id=INPUT_ACTION, multiline=True, max_length=1000)),
    ]
    return View(type="modal", callback_id=CORRECTION_VIEW, title=PlainTextObject(text=text.SLACK_CORRECT_TITLE),
                submit=PlainTextObject(text=text.SLACK_CORRECT_SUBMIT), close=PlainTextObject(text=text.SLACK_CANCEL),
                private_metadata=json.dumps(metadata), blocks=blocks).to_dict()


def edit_modal(example, metadata: dict[str, Any]) -> dict:
    blocks = [
        SectionBlock(text=MarkdownTextObject(text=text.SLACK_CORRECT_QUESTION.format(
            question=clip(escape(example.question), SECTION_LIMIT - 20)))),
        _answer_input(text.SLACK_CORRECT_ANSWER_LABEL, example.corrected_answer),
    ]
    return View(type="modal", callback_id=EDIT_VIEW, title=PlainTextObject(text=text.SLACK_EDIT_TITLE),
                submit=PlainTextObject(text=text.SLACK_EDIT_SUBMIT), close=PlainTextObject(text=text.SLACK_CANCEL),
                private_metadata=json.dumps(metadata), blocks=blocks).to_dict()


def modal_value(view: dict, block_id: str) -> str:
    value = (((view.get("state") or {}).get("values") or {}).get(block_id) or {}).get(INPUT_ACTION) or {}
    return (value.get("value") or "").strip()


# --- review --------------------------------------------------------------------------------------
def review_buttons(example_id: int) -> ActionsBlock:
    value = str(example_id)
    return ActionsBlock(block_id=f"apprenti-review:{value}", elements=[
        ButtonElement(text=PlainTextObject(text=text.SLACK_BUTTON_APPROVE), action_id=APPROVE, value=value,
                      style="primary"),
        ButtonElement(text=PlainTextObject(text=text.SLACK_BUTTON_EDIT_APPROVE), action_id=EDIT_APPROVE, value=value),
        ButtonElement(text=PlainTextObject(text=text.SLACK_BUTTON_REJECT), action_id=REJECT, value=value,
                      style="danger"),
    ])


def review_blocks(example, *, outcome: str | None = None, compact: bool = False) -> list:
    """A pending example with its buttons, or (with `outcome`) the decided one without them."""
    limit = 600 if compact else 1400
    blocks: list = []
    if not compact:
        blocks.append(HeaderBlock(text=PlainTextObject(text=text.SLACK_REVIEW_HEADER.format(id=example.id))))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=(f"#{example.id} · " if compact else "") +
                                                            text.SLACK_REVIEW_FIELDS.format(
        track=escape(example.track), author=example.author_id or "unknown"))]))
    blocks.append(SectionBlock(text=MarkdownTextObject(text=text.SLACK_REVIEW_QUESTION.format(
        text=clip(escape(example.question), limit)))))
    if example.original_answer and not compact:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=text.SLACK_REVIEW_ORIGINAL.format(
            text=clip(escape(example.original_answer), limit)))))
    blocks.append(SectionBlock(text=MarkdownTextObject(text=text.SLACK_REVIEW_CORRECTED.format(
        text=clip(escape(example.corrected_answer), limit)))))
    if example.note and not compact:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=text.SLACK_REVIEW_NOTE.format(
            text=clip(escape(example.note), 1000)))))
    if outcome:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=outcome)))
    else:
        blocks.append(review_buttons(example.id))
    return blocks


def outcome_line(example, edited: bool = False) -> str:
    if edited:
        return text.SLACK_REVIEW_OUTCOME_EDITED.format(reviewer=example.reviewer_id)
    template = text.SLACK_REVIEW_OUTCOME.get(example.status)
    return template.format(reviewer=example.reviewer_id) if template else example.status


def review_message(example, *, outcome: str | None = None) -> dict:
    return {"text": text.SLACK_FALLBACK_REVIEW.format(id=example.id),
            "blocks": [b.to_dict() for b in review_blocks(example, outcome=outcome)]}


def review_queue(examples: list, total: int) -> dict:
    if not examples:
        return notice_message(text.SLACK_REVIEW_QUEUE_EMPTY)
    blocks: list = [SectionBlock(text=MarkdownTextObject(text=text.SLACK_REVIEW_QUEUE_HEADER.format(count=total)))]
    for example in examples:
        blocks.append(DividerBlock())
        blocks.extend(review_blocks(example, compact=True))
    if total > len(examples):
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=text.SLACK_REVIEW_QUEUE_MORE.format(count=total - len(examples)))]))
    return {"text": text.SLACK_REVIEW_QUEUE_HEADER.format(count=total), "blocks": [b.to_dict() for b in blocks]}


def section(markdown: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(markdown, SECTION_LIMIT)))


def button(label: str, action_id: str, value: str, style: str | None = None) -> ButtonElement:
    return ButtonElement(text=PlainTextObject(text=clip(label, 75)), action_id=action_id, value=value, style=style)
