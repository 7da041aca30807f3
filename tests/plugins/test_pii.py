"""The built-in PII plugin (Presidio + spaCy): recall and precision per category on the labelled set,
normalisation, offsets, and the masking `scrub` does with its spans."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from plugins.builtin.pii_engine import detect, iban_ok, nir_ok, siren_ok
from plugins.manager import make_manager
from plugins.pii import normalise, scrub

LABELLED = Path(__file__).resolve().parents[1] / "data" / "pii" / "labelled.jsonl"
MIN_RECALL, MIN_PRECISION = 0.97, 0.95


def _expected_spans(item: dict) -> list[tuple[int, int, str]]:
    spans, taken = [], defaultdict(int)
    for span in item["spans"]:
        start = item["text"].index(span["text"], taken[span["text"]])
        taken[span["text"]] = start + 1
        spans.append((start, start + len(span["text"]), span["label"]))
    return spans


def score(items: list[dict]) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Per label: found (expected spans fully covered by predictions of that label), expected,
    right (predictions overlapping an expected span of their label) and predicted; plus the misses."""
    counts: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("found", "expected", "right", "predicted"), 0)
    )
    misses = []
    for item in items:
        text, expected, predicted = item["text"], _expected_spans(item), detect(item["text"])
        for start, end, label in expected:
            covered = {i for s, e, lab in predicted if lab == label for i in range(s, e)}
            counts[label]["expected"] += 1
            if all(i in covered for i in range(start, end) if text[i].isalnum()):
                counts[label]["found"] += 1
            else:
                misses.append(f"missed {label} {text[start:end]!r} in {text!r}")
        for start, end, label in predicted:
            counts[label]["predicted"] += 1
            if any(lab == label and start < e and s < end for s, e, lab in expected):
                counts[label]["right"] += 1
            else:
                misses.append(f"wrong {label} {text[start:end]!r} in {text!r}")
    return counts, misses


@pytest.fixture(scope="module")
def labelled() -> list[dict]:
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_labelled_set_is_large_bilingual_and_has_look_alikes(labelled):
    assert len(labelled) >= 120
    assert {item["lang"] for item in labelled} == {"fr", "en"}
    assert sum(not item["spans"] for item in labelled) >= 30


def test_recall_and_precision_per_category(labelled):
    counts, misses = score(labelled)
    report = {
        label: (
            round(c["found"] / c["expected"], 3) if c["expected"] else None,
            round(c["right"] / c["predicted"], 3) if c["predicted"] else None,
        )
        for label, c in sorted(counts.items())
    }
    low = {
        label: rp
        for label, rp in report.items()
        if (rp[0] is not None and rp[0] < MIN_RECALL) or (rp[1] is not None and rp[1] < MIN_PRECISION)
    }
    assert not low, f"(recall, precision) below target: {low}\n" + "\n".join(misses)
    assert all(c["expected"] for c in counts.values()), "a category is predicted but never labelled"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Appelle le 06\u200b12\u200b34 56 78", "Appelle le [PHONE]"),  # zero-width characters inside
        ("Tél. ＋３３ ６ １２ ３４ ５６ ７８ !", "Tél. [PHONE] !"),  # full-width digits (NFKC)
        ("écris à jean [at] exemple [dot] fr", "écris à [EMAIL]"),
        (
            "Bonjour Marie Dupont, votre IBAN fr76-3000-6000-0112-3456-7890-189 est noté.",
            "Bonjour [PERSON], votre IBAN [IBAN] est noté.",
        ),
        (
            "Le budget est de 1 250 000 000 euros, ticket JIRA-123456789.",
            "Le budget est de 1 250 000 000 euros, ticket JIRA-123456789.",
        ),
    ],
)
def test_scrub_masks_the_original_text(text, expected):
    assert scrub(make_manager(["pii"], entrypoints=False), text) == expected


def test_normalise_maps_every_character_back():
    text = "a\u200bb ｆｕｌｌ e\u0301"
    clean, starts, ends = normalise(text)
    assert clean == "ab full é"
    assert text[starts[clean.index("full")] : ends[clean.index("full") + 3]] == "ｆｕｌｌ"
    assert text[starts[-1] : ends[-1]] == "e\u0301"


def test_check_digits():
    assert iban_ok("fr76 3000 6000 0112 3456 7890 189") and not iban_ok("FR76 3000 6000 0112 3456 7890 188")
    assert nir_ok("1 85 05 2A 004 012 70") and nir_ok("170122B01234580") and not nir_ok("185052A00401271")
    assert siren_ok("732 829 320") and not siren_ok("732 829 321")
    assert siren_ok("35600000000048")  # La Poste's rule


def test_empty_and_blank_texts_have_no_spans():
    assert detect("") == [] and detect(" \u200b ") == []


def test_the_app_refuses_to_start_without_a_pii_plugin_unless_told_so_on_purpose():
    from bot.cli.doctor import _pii_check
    from bot.runtime import Runtime
    from bot.settings import SettingsError, load_settings

    bare = Runtime(load_settings(plugins=["tone"]), entrypoints=False)
    with pytest.raises(SettingsError, match="APPRENTI_PII=off"):
        bare.plugins  # noqa: B018
    assert _pii_check(bare).status == "fail"

    off = Runtime(load_settings(plugins=["tone"], pii="off"), entrypoints=False)
    assert not off.plugins.hook.find_pii.get_hookimpls()
    check = _pii_check(off)
    assert (check.status, "off on purpose" in check.detail) == ("warn", True)

    masked = Runtime(load_settings(plugins=["pii", "tone"]), entrypoints=False)
    check = _pii_check(masked)
    assert (check.status, check.detail) == ("ok", "personal data masked by: pii")
