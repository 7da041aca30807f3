"""Fact corrections on the bundled model (SmolLM2-135M-Instruct): answered at once, without training.

A handbook with 8 stale facts (bench/data/stale_handbook: the VPN client, reimbursement delay,
leave tool, laptop cycle, standup time, printer floor, remote days, support extension) is indexed;
8 corrections of those facts are approved (bench/data/fact_corrections.jsonl); then a paraphrase
of each corrected question is asked, through the whole pipeline (hybrid retrieval, plain layout,
batched greedy answers). A hit: the answer carries the corrected fact.

- ours: the corrections approved as facts, so they become team knowledge entries;
- baseline, same run: the corrections approved as behaviour pairs with knowledge entries off,
  so only the few-shot plugin shows them (what Apprenti did before routing).

With `--train`, a behaviour-only training run on the same track follows (the demo's template pairs,
approved), and the paraphrases are asked again with the new adapter in service: the facts must still
be answered (training does not undo the knowledge base).

    .venv/bin/python -m bench.fact_corrections [--train] [--no-docs]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bench._docs import machine_line, publish  # noqa: E402

DATA = ROOT / "bench" / "data"
HANDBOOK = DATA / "stale_handbook"
ITEMS = DATA / "fact_corrections.jsonl"
TRAIN_PAIRS = 40


def _score(answers, items) -> dict:
    from finetune.answers import contains_answer

    hits = [contains_answer(a.answer, i["answers"]) for a, i in zip(answers, items, strict=True)]
    stale = [contains_answer(a.answer, i["stale"]) for a, i in zip(answers, items, strict=True)]
    cited = [bool(a.sources) and a.sources[0].get("kind") == "team_answer" for a in answers]
    return {
        "hits": sum(hits),
        "stale": sum(stale),
        "cited": sum(cited),
        "n": len(items),
        "answers": [a.answer for a in answers],
    }


def _arm(model, kind: str, team_k: int, items):
    """A fresh home with the handbook indexed, the corrections approved as `kind`; (before, after, home)."""
    from bot import corrections
    from bot.cli.rag import ingest_paths
    from bot.llm import ACTIVE
    from bot.runtime import Runtime
    from bot.settings import load_settings
    from storage.examples import add_example

    home = Path(tempfile.mkdtemp(prefix=f"apprenti-bench-facts-{kind}-"))
    settings = load_settings(
        home=home, pii="off", plugins=["rag", "fewshot"], team_answer_k=team_k, max_new_tokens=48
    )
    ingest_paths(settings, [str(HANDBOOK)], collection="handbook")
    rt = Runtime(settings, entrypoints=False)
    rt.__dict__["chat_model"] = model
    paraphrases = [i["paraphrase"] for i in items]
    before = _score(rt.assistant.answer_many(paraphrases, adapter=ACTIVE), items)
    for item in items:
        example = add_example(
            rt.engine,
            item["question"],
            item["corrected"],
            kind=kind,
            kind_source="author",
            author_id="U_AUTHOR",
            original_answer=None,
        )
        decision = corrections.decide(rt.engine, rt.plugins, example.id, "approved", "U_REVIEWER")
        assert decision.done, decision
    started = time.perf_counter()
    after = _score(rt.assistant.answer_many(paraphrases, adapter=ACTIVE), items)
    after["seconds"] = time.perf_counter() - started
    return before, after, home


def _train_behaviour(model, home: Path, items) -> dict:
    """Approve the demo's template pairs as behaviour, run `apprenti train` on the track in its own
    process (as the scheduler does), then ask the paraphrases again with whatever is in service."""
    import subprocess

    from bot.demo import team
    from bot.llm import ACTIVE
    from bot.runtime import Runtime
    from bot.settings import load_settings
    from rag.focus import focus
    from storage.db import open_database
    from storage.examples import add_examples, new_example
    from storage.models import utcnow

    engine = open_database(f"sqlite:///{home / 'apprenti.db'}")
    pairs = [
        new_example(
            q,
            team.corrected_answer(q, s),
            context=focus(s.text, q, 160),
            track="default",
            kind="behaviour",
            status="approved",
            origin="correction",
            author_id="U_AUTHOR",
            reviewer_id="U_REVIEWER",
            reviewed_at=utcnow(),
        )
        for q, s in team.training_questions(TRAIN_PAIRS)
    ]
    add_examples(engine, pairs, "bench")
    engine.dispose()
    env = {
        **os.environ,
        "APPRENTI_HOME": str(home),
        "APPRENTI_MIN_EXAMPLES": str(TRAIN_PAIRS - 15),
        "APPRENTI_TRAIN_LEARNING_RATE": "5e-4",
        "APPRENTI_PII": "off",
        "APPRENTI_PLUGINS": "rag,fewshot",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli.main", "train", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    outcome = (
        json.loads(done.stdout)
        if done.stdout.strip().startswith("{")
        else {"status": "error", "error": done.stderr[-2000:]}
    )
    settings = load_settings(home=home, pii="off", plugins=["rag", "fewshot"], max_new_tokens=48)
    rt = Runtime(settings, entrypoints=False)
    rt.__dict__["chat_model"] = model
    answers = rt.assistant.answer_many([i["paraphrase"] for i in items], adapter=ACTIVE)
    return {
        "outcome": outcome,
        "seconds": seconds,
        "after": _score(answers, items),
        "adapter": answers[0].adapter if answers else None,
    }


def main(argv: list[str]) -> int:
    import torch

    from bot.runtime import Runtime
    from bot.settings import load_settings

    torch.set_num_threads(os.cpu_count() or 2)
    items = [json.loads(line) for line in ITEMS.read_text(encoding="utf-8").splitlines() if line.strip()]
    model = Runtime(load_settings(home=Path(tempfile.mkdtemp()), pii="off"), entrypoints=False).chat_model
    ours_before, ours, home = _arm(model, "fact", 2, items)
    base_before, base, _ = _arm(model, "behaviour", 0, items)
    n = len(items)
    lines = [
        "## Fact corrections answered at once (bundled model)",
        "",
        f"{n} stale facts in a two-page handbook, {n} approved corrections, then a paraphrase of each "
        "corrected question (hybrid retrieval, plain layout, batched greedy answers, 48 new tokens at "
        "most). A hit carries the corrected fact; stale: the old one.",
        "",
        "| | before approval: hit / stale | after approval: hit / stale | cites the team answer |",
        "|---|---|---|---|",
        f"| ours: approved as facts (team knowledge entries) | {ours_before['hits']}/{n} / "
        f"{ours_before['stale']}/{n} | **{ours['hits']}/{n}** / {ours['stale']}/{n} | {ours['cited']}/{n} |",
        f"| baseline: approved as behaviour, few-shot plugin only | {base_before['hits']}/{n} / "
        f"{base_before['stale']}/{n} | {base['hits']}/{n} / {base['stale']}/{n} | {base['cited']}/{n} |",
        "",
    ]
    for item, answer in zip(items, ours["answers"], strict=True):
        print(f"{item['paraphrase']!r} -> {answer!r}")
    print("baseline:")
    for item, answer in zip(items, base["answers"], strict=True):
        print(f"{item['paraphrase']!r} -> {answer!r}")
    if "--train" in argv:
        trained = _train_behaviour(model, home, items)
        outcome, after = trained["outcome"], trained["after"]
        verdict = (
            "; ".join((outcome.get("verdict") or {}).get("reasons", [])) or outcome.get("error", "")[:300]
        )
        lines += [
            f"Then a behaviour-only training run on the same track ({TRAIN_PAIRS} of the demo's template "
            f"pairs approved as behaviour; `apprenti train`, {trained['seconds']:.0f} s; outcome "
            f"{outcome.get('status')}, facts sent to the knowledge base instead: "
            f"{(outcome.get('dataset') or {}).get('facts_to_knowledge')}; {verdict}). Asked again with "
            f"{trained['adapter'] or 'the base model'} in service: **{after['hits']}/{n}** hits, "
            f"{after['stale']}/{n} stale, {after['cited']}/{n} citing the team answer.",
            "",
        ]
        for item, answer in zip(items, after["answers"], strict=True):
            print(f"after training: {item['paraphrase']!r} -> {answer!r}")
    lines.append("`python -m bench.fact_corrections`. " + machine_line())
    publish("fact-corrections", "\n".join(lines), write="--no-docs" not in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
