"""Built-in tone: turns a profile's `tone` and `language` into system-prompt instructions.

`tone` is free text, comma- or semicolon-separated, e.g.
`friendly, tutoiement, short, signature: — L'équipe RH`. Recognised parts (English or French)
become precise instructions: the register (formal, friendly, neutral...), tutoiement or
vouvoiement, the length, a signature line and emoji use. Anything else is passed on as written.
"""

from __future__ import annotations

import re

from plugins.hookspecs import hookimpl

REGISTERS = {
    "formal": "Use a formal, professional register.",
    "formel": "Use a formal, professional register.",
    "professional": "Use a formal, professional register.",
    "professionnel": "Use a formal, professional register.",
    "informal": "Use an informal, relaxed register.",
    "casual": "Use an informal, relaxed register.",
    "décontracté": "Use an informal, relaxed register.",
    "friendly": "Use a warm, friendly register.",
    "amical": "Use a warm, friendly register.",
    "chaleureux": "Use a warm, friendly register.",
    "neutral": "Use a neutral, factual register.",
    "neutre": "Use a neutral, factual register.",
}
ADDRESS = {
    "tutoiement": "When writing in French, address the reader as « tu » (tutoiement), never « vous ».",
    "tu": "When writing in French, address the reader as « tu » (tutoiement), never « vous ».",
    "vouvoiement": "When writing in French, address the reader as « vous » (vouvoiement), never « tu ».",
    "vous": "When writing in French, address the reader as « vous » (vouvoiement), never « tu ».",
}
LENGTHS = {
    "short": "Keep answers short: at most three sentences or five bullet points.",
    "brief": "Keep answers short: at most three sentences or five bullet points.",
    "concise": "Keep answers short: at most three sentences or five bullet points.",
    "court": "Keep answers short: at most three sentences or five bullet points.",
    "concis": "Keep answers short: at most three sentences or five bullet points.",
    "detailed": "Give complete, detailed answers, with the steps and an example when useful.",
    "long": "Give complete, detailed answers, with the steps and an example when useful.",
    "détaillé": "Give complete, detailed answers, with the steps and an example when useful.",
}
EMOJI = {
    "no emoji": "Do not use emoji.",
    "sans emoji": "Do not use emoji.",
    "emoji": "You may use an emoji where it helps, sparingly.",
}
SIGNATURE = re.compile(r"^(?:signature|signed|sign|signé)\s*[:=]?\s*(.+)$", re.IGNORECASE)
LANGUAGES = {
    "fr": "French",
    "en": "English",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "pl": "Polish",
    "sv": "Swedish",
    "da": "Danish",
    "ja": "Japanese",
    "zh": "Chinese",
}


def tone_instructions(tone: str | None, language: str | None = None) -> str | None:
    """The instructions for a tone and a language, or None when neither is set."""
    lines: list[str] = []
    if language:
        code = language.strip().lower().replace("_", "-").split("-")[0]
        lines.append(
            f"Always answer in {LANGUAGES.get(code, language.strip())}, whatever the language of the "
            "question."
        )
    for part in re.split(r"[,;\n]", tone or ""):
        part = part.strip()
        if not part:
            continue
        key = part.casefold()
        if match := SIGNATURE.match(part):
            lines.append(f"End every answer with this signature on its own line: {match.group(1).strip()}")
        elif key in REGISTERS:
            lines.append(REGISTERS[key])
        elif key in ADDRESS:
            lines.append(ADDRESS[key])
        elif key in LENGTHS:
            lines.append(LENGTHS[key])
        elif key in EMOJI:
            lines.append(EMOJI[key])
        else:
            lines.append(f"Tone: {part}.")
    if not lines:
        return None
    # Keep the order, drop repeats ("short, concise" say the same thing).
    unique = list(dict.fromkeys(lines))
    return "Style:\n" + "\n".join(f"- {line}" for line in unique)


@hookimpl
def system_prompt(profile):
    if profile is None:
        return None
    return tone_instructions(profile.tone, profile.language)
