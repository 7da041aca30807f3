"""The demo's team: its handbook, the questions people ask, the answer template they correct to, and
the questions used to measure before and after training (nobody corrects those).

The team's template is a behaviour, the kind of thing a fine-tune should learn: an answer opens with
"Answer:" ("Réponse :" in French) and ends with the help-desk line. The corrected answers are written
from the handbook itself: the sentence of the right section that answers the question.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from rag.focus import focus

HERE = Path(__file__).parent
HANDBOOK = HERE / "handbook"
PREFIX = {"en": "Answer:", "fr": "Réponse :"}
FOOTER = {
    "en": "More: ask in #help-desk if anything is unclear.",
    "fr": "Plus : demandez sur #help-desk si besoin.",
}

# Per handbook section, how people name the subject (English sections asked in English, French in French).
TOPICS = {
    ("holidays.md", "Requesting leave"): ["requesting holidays", "booking leave"],
    ("holidays.md", "Public holidays"): ["working on a public holiday", "public holidays"],
    ("holidays.md", "Sick leave"): ["being off sick", "sick leave"],
    ("security.md", "Passwords"): ["passwords", "choosing a password"],
    ("security.md", "Incidents"): ["a security incident", "a phishing e-mail"],
    ("security.md", "Laptops"): ["getting a new laptop", "laptop security"],
    ("notes-de-frais.md", "Délais"): ["déposer une note de frais", "le délai des notes de frais"],
    ("notes-de-frais.md", "Plafonds"): ["les plafonds de dépenses", "un repas d'affaires"],
    ("notes-de-frais.md", "Remboursement"): ["le remboursement des frais", "être remboursé"],
    ("teletravail.md", "Règles"): ["le télétravail", "travailler de chez moi"],
    ("teletravail.md", "Équipement"): ["l'équipement du télétravail", "l'indemnité de télétravail"],
}
FORMS = {
    "en": ["How do I handle {}?", "What are the rules on {}?", "What should I know about {}?"],
    "fr": ["Comment faire pour {} ?", "Quelles sont les règles pour {} ?", "Que faut-il savoir sur {} ?"],
}


@dataclass(frozen=True)
class Section:
    file: str
    title: str
    heading: str
    text: str

    @property
    def language(self) -> str:
        return "fr" if self.file in ("notes-de-frais.md", "teletravail.md") else "en"


def sections() -> dict[tuple[str, str], Section]:
    out = {}
    for path in sorted(HANDBOOK.glob("*.md")):
        title, heading, lines = "", "", []
        for line in path.read_text(encoding="utf-8").splitlines() + ["## "]:
            if line.startswith("# "):
                title = line[2:].strip()
            elif line.startswith("## "):
                if heading:
                    out[(path.name, heading)] = Section(path.name, title, heading, " ".join(lines).strip())
                heading, lines = line[3:].strip(), []
            elif line.strip():
                lines.append(line.strip())
    return out


def corrected_answer(question: str, section: Section) -> str:
    """What a person who knows the handbook writes: the sentence that answers, in the team's template."""
    fact = focus(section.text, question, 160)
    return f"{PREFIX[section.language]} {fact}\n{FOOTER[section.language]}"


def training_questions(count: int) -> list[tuple[str, Section]]:
    """`count` questions people ask and then correct, spread over the sections and phrasings.

    Two kinds, alternating while the second lasts: broad questions about a subject, and the handbook
    questions of `questions.jsonl` that `held_out()` does not keep back (a precise fact each, as the
    held-out questions ask). Broad question i asks about section i mod 11 in phrasing i mod 3 (11 and 3
    share no factor, so the first 33 are all different pairs), with the sections' first way of naming
    the subject, then their second. A team asks in many ways: when 22 of the 24 corrected questions were
    "How do I handle …?", the adapter learnt the template for that phrasing only, and with broad
    questions alone it answered the held-out precise ones in the template's opening without its footer
    (2 of 6 held-out questions in the whole template both times)."""
    known = sections()
    keys = list(TOPICS)
    broad = []
    for i in range(len(keys) * 3 * 2):
        key = keys[i % len(keys)]
        section = known[key]
        form = FORMS[section.language][i % 3]
        broad.append((form.format(TOPICS[key][(i // (len(keys) * 3)) % 2]), section))
    kept_back = {row["question"] for row in held_out()}
    precise = [
        (row["question"], _section_of(row, known))
        for row in _handbook_questions()
        if row["question"] not in kept_back
    ]
    pool = []
    for i in range(max(len(broad), len(precise))):
        pool.extend(kind[i] for kind in (broad, precise) if i < len(kind))
    return pool[:count]


def _section_of(row: dict, known: dict[tuple[str, str], Section]) -> Section:
    """The section of the row's file that states one of its accepted answers."""
    for (file, _), section in known.items():
        if file == row["source"] and any(a.lower() in section.text.lower() for a in row["answers"]):
            return section
    raise ValueError(
        f"questions.jsonl: no section of {row['source']} states an answer to {row['question']!r}"
    )


def _handbook_questions() -> list[dict]:
    return [
        json.loads(line)
        for line in (HERE / "questions.jsonl").read_text(encoding="utf-8").splitlines()
        if line
    ]


def follows_template(answer: str) -> bool:
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    return any(lines[0].startswith(p) for p in PREFIX.values()) and lines[-1] in FOOTER.values()


def held_out() -> list[dict]:
    """In-domain questions nobody corrects, with the facts a right answer contains."""
    rows = _handbook_questions()
    picks = {
        "How long must a password be?",
        "How long does delivery of a new laptop take?",
        "What do I get if I work on a public holiday?",
        "Quel est le plafond pour un repas d'affaires ?",
        "Combien de jours de télétravail par semaine sont autorisés ?",
        "Dans quel délai faut-il déposer une note de frais ?",
    }
    return [r for r in rows if r["question"] in picks]


# General questions, nothing to do with the team: answered right before, and after, and never in the
# team's template.
GENERAL = [
    ("What is the capital of France?", ["Paris"]),
    ("What is the capital of Italy?", ["Rome"]),
    ("What is the capital of Japan?", ["Tokyo"]),
    ("How many days are there in a week?", ["seven", "7"]),
    ("What is frozen water called?", ["ice"]),
    ("What is 2 + 2?", ["4", "four"]),
    ("What is 20 minus 8?", ["12", "twelve"]),
    ("What is the largest planet in the solar system?", ["Jupiter"]),
    ("What colour is grass?", ["green"]),
    ("What is the opposite of cold?", ["hot", "warm"]),
    ("How many legs does a spider have?", ["eight", "8"]),
    ('How do you say "hello" in French?', ["bonjour", "salut"]),
]

_SPACES = re.compile(r"\s+")


def one_line(text: str) -> str:
    return _SPACES.sub(" ", text).strip()
