"""Which way a correction goes: a changed fact to the knowledge base, a changed form to training.

`suggest_kind` compares the answer Apprenti gave with the one a person wrote, by rule:
- the *facts* of a text are the tokens that carry them — numbers, dates and times, codes, names
  (capitalised inside a sentence, acronyms, CamelCase), e-mail addresses, URLs and paths — plus its
  ordinary content words;
- the *form* is everything else: template lines ("Answer:", "Source:", "Réponse :"), bullets and
  numbered steps, greetings and sign-offs, politeness, length and layout.
A correction that removes or adds fact tokens, or swaps several content words for others, fixed a
fact; one that keeps them and changes the form fixed a behaviour; one that does both is `both`.
Lines of a team template that only name a source ("Source: IT help desk") are form, whatever
they hold. The reviewer sees the suggestion and changes it in one click; accuracy on a labelled
set is measured in tests/bot/test_routing.py and recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.tokenize import fold

KINDS = ("fact", "behaviour", "both")

# Lines that belong to a template, not to what the answer says.
_TEMPLATE_LINE = re.compile(
    r"^\s*(?:[-*•>#]+\s*)?\**\s*(?:answer|r[ée]ponse|source|sources|tl;?dr|summary|r[ée]sum[ée]|note|"
    r"in short|en bref|steps?|[ée]tapes?|contact|help ?desk)\s*\**\s*:",
    re.IGNORECASE,
)
_SOURCE_LINE = re.compile(
    r"^\s*(?:[-*•>#]+\s*)?\**\s*(?:sources?|contact|help ?desk|see|voir)\s*\**\s*:", re.IGNORECASE
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_EMPHASIS = re.compile(r"\*\*|__|`|^#+\s", re.MULTILINE)
_TOKEN = re.compile(r"[\w@./:+-]+", re.UNICODE)
_SENTENCES = re.compile(r"(?<=[.!?:;])\s+")

# Words that set the tone or open and close a message: changing them is behaviour.
TONE_WORDS = frozenset(
    """
hi hello hey dear thanks thank please sorry afraid kindly regards cheers best welcome glad happy hope
great sure ok okay certainly absolutely unfortunately yes no nope yep yeah hmm well just simply basically
obviously course really quite very let know feel free tu toi ton ta tes vous votre vos bonjour salut coucou
merci svp stp plait desole desolee malheureusement
cordialement bien belle journee oui non bienvenue volontiers hesitez hesite hesiter n'hesitez bonne
""".split()
)

# Words that name a quantity, a rank or a date: a fact, like a digit ("one"/"un" are too often articles).
FACT_WORDS = frozenset(
    """
two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred thousand
first second third fourth fifth sixth seventh eighth ninth tenth half twice daily weekly monthly yearly
monday tuesday wednesday thursday friday saturday sunday january february march april june july
august september october november december
deux trois quatre cinq six sept huit neuf dix onze douze vingt trente quarante cinquante cent mille
premier premiere deuxieme troisieme quatrieme cinquieme moitie double
lundi mardi mercredi jeudi vendredi samedi dimanche janvier fevrier mars avril mai juin juillet aout
septembre octobre novembre decembre
""".split()
)

_STOPWORDS = frozenset(
    """
a an the and or but if of to in on at by for from with without into onto over under about as is are was
were be been being am do does did done have has had having can could will would shall should may might
must it its it's this that these those there here then than so such not no nor only also too very
i you he she we they me him her us them my your his our their mine yours what which who whom whose when
where why how all any both each few more most other some own same just now up down out off again once
get got make made go goes going take takes need needs use used using let lets via per after before
once while until since ago every each environ apres avant depuis pendant
le la les l un une des du de d au aux et ou mais si en dans sur sous par pour avec sans chez vers est
sont etait etaient etre ete a ai as avons avez ont avait avaient peut peuvent doit doivent faut fait
faire ce cet cette ces il elle ils elles on nous vous je tu me te se lui leur leurs mon ma mes ton ta tes
son sa ses notre nos votre vos qui que quoi dont ou quand comment pourquoi tout tous toute toutes plus
moins aussi tres bien ne pas n y c s j qu ca cela ceci deja encore puis alors donc
""".split()
)


@dataclass(frozen=True)
class Suggestion:
    kind: str
    reason: str


@dataclass
class _Reading:
    facts: set[str]
    words: set[str]
    tone: set[str]
    template: int
    bullets: int
    emphasis: int
    lines: int
    length: int


def _is_fact_token(raw: str, sentence_start: bool) -> bool:
    core = raw.strip(".,:;!?()[]\"'«»")
    if not core:
        return False
    if fold(core) in FACT_WORDS:
        return True
    if fold(core) in _STOPWORDS or fold(core) in TONE_WORDS:
        return False
    if any(c.isdigit() for c in core) or "@" in core or "://" in core or "/" in core.strip("/"):
        return True
    letters = [c for c in core if c.isalpha()]
    if len(letters) >= 2 and all(c.isupper() for c in letters):
        return True  # an acronym: VPN, RH, SIRET
    if any(c.isupper() for c in core[1:]) and core[0].isalpha():
        return True  # CamelCase: WireGuard, GitLab
    return core[0].isupper() and not sentence_start


def _read(text: str) -> _Reading:
    facts: set[str] = set()
    words: set[str] = set()
    tone: set[str] = set()
    template = bullets = 0
    lines = [line for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        if _TEMPLATE_LINE.match(line):
            template += 1
        if _BULLET.match(line):
            bullets += 1
        if _SOURCE_LINE.match(line):
            continue  # a template's source line names where, not what
        body = _TEMPLATE_LINE.sub("", line, count=1)
        body = _BULLET.sub("", body, count=1)
        for sentence in _SENTENCES.split(body.replace("**", " ").replace("`", " ")):
            for position, raw in enumerate(_TOKEN.findall(sentence)):
                token = raw.strip(".,:;!?()[]\"'«»-+")
                if not token:
                    continue
                folded = fold(token)
                for part in re.split(r"[’']", folded):
                    if part in TONE_WORDS:
                        tone.add(part)
                if _is_fact_token(raw, position == 0):
                    facts.add(folded.rstrip("."))
                elif len(folded) > 2 and folded not in _STOPWORDS and folded not in TONE_WORDS:
                    words.add(folded)
    return _Reading(
        facts,
        words,
        tone,
        template,
        bullets,
        len(_EMPHASIS.findall(text or "")),
        len(lines),
        len((text or "").strip()),
    )


def _stem(word: str) -> str:
    """A crude stem, enough to see "reimbursed" and "reimbursement" as one word."""
    for suffix in (
        "ements",
        "ement",
        "ments",
        "ment",
        "ings",
        "ing",
        "ions",
        "ion",
        "ees",
        "ee",
        "es",
        "ed",
        "ly",
        "er",
        "s",
        "e",
    ):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _form_changes(before: _Reading, after: _Reading, *, length: bool = True) -> list[str]:
    """What changed in the form. Length counts only where the facts stayed (an answer that gains a
    fact grows; one made concise shrinks)."""
    changes = []
    if after.template != before.template:
        changes.append("template lines")
    if abs(after.bullets - before.bullets) >= 2 or (after.bullets and not before.bullets):
        changes.append("list layout")
    if after.tone ^ before.tone:
        changes.append("tone words")
    if after.emphasis != before.emphasis:
        changes.append("emphasis")
    if length and before.length and not (0.5 <= after.length / before.length <= 1.8):
        changes.append("length")
    return changes


def suggest_kind(original: str | None, corrected: str) -> Suggestion:
    """fact, behaviour or both for a correction of `original` into `corrected`, with the reason."""
    if not (original or "").strip():
        return Suggestion("behaviour", "no original answer to compare with")
    before, after = _read(original or ""), _read(corrected)
    removed_facts, added_facts = before.facts - after.facts, after.facts - before.facts
    before_words = {_stem(w) for w in before.words}
    after_words = {_stem(w) for w in after.words}
    removed_words, added_words = before_words - after_words, after_words - before_words
    form = _form_changes(before, after, length=False)

    fact_reasons = []
    if removed_facts or added_facts:
        shown = sorted(removed_facts)[:3] + sorted(added_facts)[:3]
        fact_reasons.append("changed " + ", ".join(shown))
    elif len(removed_words) >= 2 and len(added_words) >= 2:
        fact_reasons.append("replaced " + ", ".join(sorted(removed_words)[:3]))
    elif len(added_words) >= 2 and not form:
        fact_reasons.append("added " + ", ".join(sorted(added_words)[:3]))
    if not fact_reasons:
        form = _form_changes(before, after)
    if fact_reasons and form:
        return Suggestion("both", f"{fact_reasons[0]}; and the form ({', '.join(form)})")
    if fact_reasons:
        return Suggestion("fact", fact_reasons[0])
    if form:
        return Suggestion("behaviour", "same facts, new form (" + ", ".join(form) + ")")
    return Suggestion("behaviour", "same facts, reworded")
