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
    """`count` questions people ask and then correct, spread over the sections and phrasings."""
    known = sections()
    pool = []
    for form_index in range(3):
        for topic_index in range(2):
            for key, topics in TOPICS.items():
                section = known[key]
                pool.append((FORMS[section.language][form_index].format(topics[topic_index]), section))
    return pool[:count]


def follows_template(answer: str) -> bool:
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    return any(lines[0].startswith(p) for p in PREFIX.values()) and lines[-1] in FOOTER.values()


def held_out() -> list[dict]:
    """In-domain questions nobody corrects, with the facts a right answer contains."""
    rows = [
        json.loads(line)
        for line in (HERE / "questions.jsonl").read_text(encoding="utf-8").splitlines()
        if line
    ]
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
