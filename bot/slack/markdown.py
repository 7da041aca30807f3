"""Model output in Slack: answers are Markdown (streamed as `markdown_text`, or `markdown` blocks),
and the few places that only take mrkdwn (context lines, review messages) get it converted, so no
reader ever sees a literal `## Heading` or `**bold**`."""

from __future__ import annotations

import re

# Slack control sequences (<!channel>, <@U…>, <#C…>): a word joiner after "<" keeps them as text,
# so model output cannot ping a channel or mention someone; the reader sees the same characters.
CONTROL = re.compile(r"<(?=[!@#])")
WORD_JOINER = "\u2060"

HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)")
BULLET = re.compile(r"^(\s*)[-*+]\s+", re.MULTILINE)
STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
FENCE = re.compile(r"(```.*?```|`[^`\n]+`)", re.DOTALL)


def defuse(markdown: str | None) -> str:
    """Markdown as the model wrote it, minus the power to trigger Slack mentions."""
    return CONTROL.sub("<" + WORD_JOINER, markdown or "")


def escape_mrkdwn(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _convert(prose: str) -> str:
    prose = escape_mrkdwn(prose)
    prose = HEADING.sub(lambda m: f"*{m.group(1).strip('*_ ')}*", prose)
    prose = BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", prose)
    prose = STRIKE.sub(lambda m: f"~{m.group(1)}~", prose)
    prose = LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", prose)
    return BULLET.sub(lambda m: f"{m.group(1)}• ", prose)


def to_mrkdwn(markdown: str | None) -> str:
    """Standard Markdown → Slack mrkdwn (headings become bold lines; code is left as it is), escaped."""
    parts = FENCE.split(markdown or "")
    return "".join(escape_mrkdwn(part) if i % 2 else _convert(part) for i, part in enumerate(parts))
