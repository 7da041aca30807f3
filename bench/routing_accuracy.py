"""How often the fact/behaviour suggestion (bot/routing.py) agrees with a person's label.

Two labelled sets of corrections in English and French (tests/data/routing_*.jsonl: an answer and
the correction a person wrote, labelled fact, behaviour or both): the one the rules were tuned on,
and a held-out one written after. Baselines in the same run: every correction is behaviour (what
Apprenti did before routing), and a one-line rule (a changed digit means a fact).

    .venv/bin/python -m bench.routing_accuracy [--no-docs]
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._docs import machine_line, publish  # noqa: E402

SETS = {
    "tuned on": ROOT / "tests" / "data" / "routing_corrections.jsonl",
    "held out": ROOT / "tests" / "data" / "routing_heldout.jsonl",
}


def _digits_rule(original: str, corrected: str) -> str:
    return "fact" if set(re.findall(r"\d+", original)) != set(re.findall(r"\d+", corrected)) else "behaviour"


def _accuracy(items, suggest) -> tuple[float, dict[str, str]]:
    right, total = Counter(), Counter()
    for item in items:
        total[item["kind"]] += 1
        right[item["kind"]] += suggest(item["original"], item["corrected"]) == item["kind"]
    per_kind = {k: f"{right[k]}/{total[k]}" for k in ("fact", "behaviour", "both") if total[k]}
    return sum(right.values()) / len(items), per_kind


def main(argv: list[str]) -> int:
    from bot.routing import suggest_kind

    rows = []
    for name, path in SETS.items():
        items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        ours, per_kind = _accuracy(items, lambda o, c: suggest_kind(o, c).kind)
        always, _ = _accuracy(items, lambda o, c: "behaviour")
        digits, _ = _accuracy(items, _digits_rule)
        rows.append(
            f"| {name} ({len(items)}) | **{ours:.2f}** "
            f"({', '.join(f'{k} {v}' for k, v in per_kind.items())}) | {always:.2f} | {digits:.2f} |"
        )
    lines = [
        "## Fact or behaviour: the routing suggestion",
        "",
        "Labelled corrections, English and French (an answer and the correction a person wrote); accuracy "
        "of the suggested kind:",
        "",
        "| set | ours: `bot.routing.suggest_kind` | baseline: always behaviour | baseline: a changed digit "
        "is a fact |",
        "|---|---|---|---|",
        *rows,
        "",
        "Target: >= 0.85. `python -m bench.routing_accuracy`. " + machine_line(),
    ]
    publish("routing-accuracy", "\n".join(lines), write="--no-docs" not in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
