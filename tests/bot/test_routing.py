"""The fact/behaviour suggestion on labelled corrections (tests/data/routing_*.jsonl)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bot.routing import KINDS, suggest_kind

DATA = Path(__file__).parents[1] / "data"


def _score(name: str) -> tuple[float, dict[str, float], list[str]]:
    items = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
    right, total, misses = Counter(), Counter(), []
    for item in items:
        assert item["kind"] in KINDS, item
        got = suggest_kind(item["original"], item["corrected"])
        total[item["kind"]] += 1
        if got.kind == item["kind"]:
            right[item["kind"]] += 1
        else:
            misses.append(f"{item['kind']} suggested {got.kind} ({got.reason}): {item['corrected'][:60]!r}")
    return sum(right.values()) / len(items), {k: right[k] / total[k] for k in total}, misses


@pytest.mark.parametrize("name, size", [("routing_corrections.jsonl", 40), ("routing_heldout.jsonl", 20)])
def test_suggestion_accuracy_on_labelled_corrections(name, size):
    accuracy, per_kind, misses = _score(name)
    print(f"{name}: accuracy {accuracy:.3f}, per kind {per_kind}")
    assert sum(1 for _ in (DATA / name).open()) >= size
    assert accuracy >= 0.85, misses
    assert min(per_kind.values()) >= 0.75, (per_kind, misses)


@pytest.mark.parametrize(
    "original, corrected, kind",
    [
        ("The VPN client is AnyConnect.", "The VPN client is WireGuard.", "fact"),
        ("Reimbursed within 30 days.", "Reimbursed within 15 days.", "fact"),
        ("Le bureau ferme le vendredi.", "Le bureau ferme le jeudi.", "fact"),
        (
            "The VPN client is WireGuard.",
            "Answer: The VPN client is WireGuard.\nSource: IT help desk",
            "behaviour",
        ),
        ("Tu peux demander à Julie.", "Vous pouvez demander à Julie.", "behaviour"),
        (
            "The VPN client is AnyConnect.",
            "Answer: The VPN client is WireGuard.\nSource: IT help desk",
            "both",
        ),
    ],
)
def test_suggestion_rules(original, corrected, kind):
    got = suggest_kind(original, corrected)
    assert got.kind == kind, got.reason
    assert got.reason


def test_no_original_answer_means_behaviour():
    assert suggest_kind(None, "Anything").kind == "behaviour"
    assert suggest_kind("  ", "Anything").kind == "behaviour"
