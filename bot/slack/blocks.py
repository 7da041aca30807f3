"""Block Kit for every message and view, built from slack_sdk.models.blocks so Slack's limits are
checked (`to_dict()` validates) before anything is sent."""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    RadioButtonsElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot import messages as text
from bot.routing import suggest_kind
from bot.slack.markdown import to_mrkdwn

SECTION_LIMIT = 2900  # Slack allows 3000 characters per section; keep room for escaping
INPUT_LIMIT = 3000  # plain_text_input values
MESSAGE_BLOCKS = 50  # Slack refuses a message with more blocks
# A compact review entry is a divider and 4 blocks; the queue adds a header and a "next page" line.
REVIEW_PAGE = (MESSAGE_BLOCKS - 2) // 5

# action and view ids (the roles middleware maps each to a capability)
VOTE_UP, VOTE_DOWN, CORRECT, SHARE = "answer_vote_up", "answer_vote_down", "answer_correct", "answer_share"
FEEDBACK = "answer_feedback"  # Slack's feedback_buttons element; values "up:ID" / "down:ID"
APPROVE, EDIT_APPROVE, REJECT = "review_approve", "review_edit", "review_reject"
REVIEW_KIND = "review_kind"  # the kind select of a review message; option values "ID:kind"
RETRAIN, ROLLBACK, ACTIVATE, DISCARD = "admin_retrain", "admin_rollback", "admin_activate", "admin_discard"
STATUS = "admin_status"
CORRECTION_VIEW, EDIT_VIEW = "correction_modal", "review_edit_modal"
CORRECT_SHORTCUT = "correct_message"
ANSWER_BLOCK, NOTE_BLOCK, KIND_BLOCK, INPUT_ACTION = "answer", "note", "kind", "value"
KINDS = ("fact", "behaviour", "both")


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


def notice_message(message: str) -> dict:
    return {
        "text": message,
        "blocks": [SectionBlock(text=MarkdownTextObject(text=clip(message, SECTION_LIMIT))).to_dict()],
    }


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
        element=PlainTextInputElement(
            action_id=INPUT_ACTION,
            multiline=True,
            max_length=INPUT_LIMIT,
            initial_value=clip(initial, INPUT_LIMIT),
        ),
    )


def correction_modal(question: str, answer: str, metadata: dict[str, Any], intro: str | None = None) -> dict:
    blocks = [SectionBlock(text=MarkdownTextObject(text=intro))] if intro else []
    blocks += [
        SectionBlock(
            text=MarkdownTextObject(
                text=text.SLACK_CORRECT_QUESTION.format(question=clip(escape(question), SECTION_LIMIT - 20))
            )
        ),
        _answer_input(text.SLACK_CORRECT_ANSWER_LABEL, answer, text.SLACK_CORRECT_ANSWER_HINT),
        InputBlock(
            block_id=KIND_BLOCK,
            optional=True,
            label=PlainTextObject(text=text.SLACK_CORRECT_KIND_LABEL),
            hint=PlainTextObject(text=text.SLACK_CORRECT_KIND_HINT),
            element=RadioButtonsElement(
                action_id=INPUT_ACTION,
                options=[Option(value=kind, label=text.KIND_LABELS[kind]) for kind in KINDS],
            ),
        ),
        InputBlock(
            block_id=NOTE_BLOCK,
            optional=True,
            label=PlainTextObject(text=text.SLACK_CORRECT_NOTE_LABEL),
            element=PlainTextInputElement(action_id=INPUT_ACTION, multiline=True, max_length=1000),
        ),
    ]
    return View(
        type="modal",
        callback_id=CORRECTION_VIEW,
        title=PlainTextObject(text=text.SLACK_CORRECT_TITLE),
        submit=PlainTextObject(text=text.SLACK_CORRECT_SUBMIT),
        close=PlainTextObject(text=text.SLACK_CANCEL),
        private_metadata=json.dumps(metadata),
        blocks=blocks,
    ).to_dict()


def edit_modal(example, metadata: dict[str, Any]) -> dict:
    blocks = [
        SectionBlock(
            text=MarkdownTextObject(
                text=text.SLACK_CORRECT_QUESTION.format(
                    question=clip(escape(example.question), SECTION_LIMIT - 20)
                )
            )
        ),
        _answer_input(text.SLACK_CORRECT_ANSWER_LABEL, example.corrected_answer),
    ]
    return View(
        type="modal",
        callback_id=EDIT_VIEW,
        title=PlainTextObject(text=text.SLACK_EDIT_TITLE),
        submit=PlainTextObject(text=text.SLACK_EDIT_SUBMIT),
        close=PlainTextObject(text=text.SLACK_CANCEL),
        private_metadata=json.dumps(metadata),
        blocks=blocks,
    ).to_dict()


def modal_value(view: dict, block_id: str) -> str:
    """A text input's value, or a radio group's selected option ("" when none)."""
    value = (((view.get("state") or {}).get("values") or {}).get(block_id) or {}).get(INPUT_ACTION) or {}
    if "selected_option" in value:
        return ((value.get("selected_option") or {}).get("value") or "").strip()
    return (value.get("value") or "").strip()


# --- review --------------------------------------------------------------------------------------
def kind_select(example) -> StaticSelectElement:
    """One click changes what the correction fixed (fact, tone/format, both)."""
    options = [Option(value=f"{example.id}:{kind}", label=text.KIND_SHORT[kind]) for kind in KINDS]
    current = next((o for o in options if o.value.endswith(f":{example.kind}")), None)
    return StaticSelectElement(
        action_id=REVIEW_KIND,
        placeholder=PlainTextObject(text=text.SLACK_REVIEW_KIND_PLACEHOLDER),
        options=options,
        initial_option=current,
    )


def review_buttons(example) -> ActionsBlock:
    value = str(example.id)
    return ActionsBlock(
        block_id=f"apprenti-review:{value}",
        elements=[
            ButtonElement(
                text=PlainTextObject(text=text.SLACK_BUTTON_APPROVE),
                action_id=APPROVE,
                value=value,
                style="primary",
            ),
            ButtonElement(
                text=PlainTextObject(text=text.SLACK_BUTTON_EDIT_APPROVE), action_id=EDIT_APPROVE, value=value
            ),
            ButtonElement(
                text=PlainTextObject(text=text.SLACK_BUTTON_REJECT),
                action_id=REJECT,
                value=value,
                style="danger",
            ),
            kind_select(example),
        ],
    )


def kind_line(example) -> str:
    source = text.KIND_SOURCES.get(example.kind_source or "", example.kind_source or "default")
    reason = ""
    if example.kind_source == "suggested":  # say why, so the reviewer can judge the suggestion
        reason = f": {suggest_kind(example.original_answer, example.corrected_answer).reason}"
    return text.SLACK_REVIEW_KIND.format(
        kind=text.KIND_SHORT.get(example.kind, example.kind), source=source, reason=reason
    )


def review_blocks(example, *, outcome: str | None = None, compact: bool = False) -> list:
    """A pending example with its buttons, or (with `outcome`) the decided one without them."""
    limit = 600 if compact else 1400
    blocks: list = []
    if not compact:
        blocks.append(HeaderBlock(text=PlainTextObject(text=text.SLACK_REVIEW_HEADER.format(id=example.id))))
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=(f"#{example.id} · " if compact else "")
                    + text.SLACK_REVIEW_FIELDS.format(
                        track=escape(example.track), author=example.author_id or "unknown"
                    )
                    + " · "
                    + kind_line(example)
                )
            ]
        )
    )
    blocks.append(
        SectionBlock(
            text=MarkdownTextObject(
                text=text.SLACK_REVIEW_QUESTION.format(text=clip(escape(example.question), limit))
            )
        )
    )
    if example.original_answer and not compact:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=text.SLACK_REVIEW_ORIGINAL.format(
                        text=clip(to_mrkdwn(example.original_answer), limit)
                    )
                )
            )
        )
    blocks.append(
        SectionBlock(
            text=MarkdownTextObject(
                text=text.SLACK_REVIEW_CORRECTED.format(text=clip(to_mrkdwn(example.corrected_answer), limit))
            )
        )
    )
    if example.note and not compact:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=text.SLACK_REVIEW_NOTE.format(text=clip(escape(example.note), 1000))
                )
            )
        )
    if outcome:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(outcome, SECTION_LIMIT))))
        if example.status == "approved":  # an approved pair can still move between knowledge and training
            blocks.append(
                ActionsBlock(block_id=f"apprenti-review:{example.id}", elements=[kind_select(example)])
            )
    else:
        blocks.append(review_buttons(example))
    return blocks


def routing_lines(example, replaced: list | None = None, flagged: int = 0) -> list[str]:
    """Where an approved example went: the knowledge base (or why not yet), training, or both."""
    if example.status != "approved":
        return []
    lines = []
    if example.kind in ("fact", "both") and example.superseded_by is None:
        if example.indexed_at is not None and not example.index_error:
            lines.append(text.SLACK_REVIEW_FACT_INDEXED)
        else:
            lines.append(
                text.SLACK_REVIEW_FACT_FAILED.format(
                    error=clip(escape(example.index_error or "pending"), 200)
                )
            )
        lines += [
            text.SLACK_REVIEW_REPLACED.format(id=old.id, answer=clip(escape(old.corrected_answer), 200))
            for old in replaced or []
        ]
        if flagged:
            lines.append(text.SLACK_REVIEW_FLAGGED.format(count=flagged))
    if example.kind in ("behaviour", "both"):
        lines.append(text.SLACK_REVIEW_TRAINING)
    return lines


def outcome_line(example, edited: bool = False, replaced: list | None = None, flagged: int = 0) -> str:
    if edited:
        first = text.SLACK_REVIEW_OUTCOME_EDITED.format(reviewer=example.reviewer_id)
    else:
        template = text.SLACK_REVIEW_OUTCOME.get(example.status)
        first = template.format(reviewer=example.reviewer_id) if template else example.status
    return "\n".join([first, *routing_lines(example, replaced, flagged)])


def review_message(example, *, outcome: str | None = None) -> dict:
    return {
        "text": text.SLACK_FALLBACK_REVIEW.format(id=example.id),
        "blocks": [b.to_dict() for b in review_blocks(example, outcome=outcome)],
    }


def review_queue(examples: list, total: int, page: int = 1) -> dict:
    """One page of the review queue (REVIEW_PAGE examples, from `(page - 1) * REVIEW_PAGE`), within
    Slack's MESSAGE_BLOCKS, with a line naming the next page when there is one."""
    if not examples:
        return notice_message(
            text.SLACK_REVIEW_QUEUE_EMPTY
            if page == 1
            else text.SLACK_REVIEW_QUEUE_PAST.format(page=page, count=total)
        )
    blocks: list = [
        SectionBlock(text=MarkdownTextObject(text=text.SLACK_REVIEW_QUEUE_HEADER.format(count=total)))
    ]
    for example in examples[:REVIEW_PAGE]:
        blocks.append(DividerBlock())
        blocks.extend(review_blocks(example, compact=True))
    last = (page - 1) * REVIEW_PAGE + min(len(examples), REVIEW_PAGE)
    if total > last:
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=text.SLACK_REVIEW_QUEUE_MORE.format(
                            first=(page - 1) * REVIEW_PAGE + 1, last=last, count=total, next=page + 1
                        )
                    )
                ]
            )
        )
    return {
        "text": text.SLACK_REVIEW_QUEUE_HEADER.format(count=total),
        "blocks": [b.to_dict() for b in blocks],
    }


def section(markdown: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(markdown, SECTION_LIMIT)))


def button(label: str, action_id: str, value: str, style: str | None = None) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=clip(label, 75)), action_id=action_id, value=value, style=style
    )
