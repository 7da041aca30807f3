"""RAG answer accuracy on the bundled model (SmolLM2-135M-Instruct), 2 CPU cores.

Accuracy: the demo handbook's 16 questions (bot/demo/questions.jsonl, English and French) answered
through the whole pipeline (`Assistant.answer_many`: hybrid retrieval, the plain layout, batched
greedy answers), against two references in the same run: the numbered layout (titled sources and an
instruction to cite them, as for big models), and the plain prompt given the right passage by hand
("Text: <the whole right section> Question: …"). A hit: the answer contains an accepted string.

Decode speed and time to first token: bench/decode_speed.py.

    .venv/bin/python -m bench.answer_quality [--no-docs]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bench._docs import machine_line, publish  # noqa: E402
from bench._handbook import HANDBOOK, reference_prompts  # noqa: E402
from bench._handbook import items as handbook_items  # noqa: E402


def _accuracy(answers, items) -> float:
    from finetune.answers import contains_answer

    return sum(contains_answer(a, i["answers"]) for a, i in zip(answers, items, strict=True)) / len(items)


def main(argv: list[str]) -> int:
    import torch

    from bot.cli.rag import ingest_paths
    from bot.llm import BASE
    from bot.runtime import Runtime
    from bot.settings import load_settings

    torch.set_num_threads(os.cpu_count() or 2)
    items = handbook_items()
    home = Path(tempfile.mkdtemp(prefix="apprenti-bench-answers-"))
    settings = load_settings(home=home, pii="off", plugins=["rag"], fewshot_k=0, max_new_tokens=64)
    ingest_paths(settings, [str(HANDBOOK)], collection="handbook")
    questions = [i["question"] for i in items]
    plain_rt = Runtime(settings, entrypoints=False)
    ours = _accuracy(
        [a.answer for a in plain_rt.assistant.answer_many(questions, mode="rag", adapter=BASE)], items
    )
    numbered_rt = Runtime(
        load_settings(
            home=home, pii="off", plugins=["rag"], fewshot_k=0, max_new_tokens=64, prompt_layout="numbered"
        ),
        entrypoints=False,
    )
    numbered_rt.__dict__["chat_model"] = plain_rt.chat_model
    numbered = _accuracy(
        [a.answer for a in numbered_rt.assistant.answer_many(questions, mode="rag", adapter=BASE)], items
    )
    model = plain_rt.chat_model
    prompts = reference_prompts(items)
    reference = _accuracy([g.text for g in model.generate_batch(prompts, max_new_tokens=64)], items)

    lines = [
        "## Answers on the bundled model (SmolLM2-135M-Instruct)",
        "",
        f"RAG answer accuracy on the demo handbook's {len(items)} questions (English and French; a hit "
        "contains an accepted string), batched greedy answers, 64 new tokens at most:",
        "",
        "| prompt | accuracy |",
        "|---|---|",
        f"| ours: hybrid retrieval, plain layout (best passage cut to its relevant sentences) | {ours:.2f} |",
        f"| numbered layout (titled sources, cite [1], [2]; what bigger models get) | {numbered:.2f} |",
        f"| reference: plain prompt with the right section given by hand | {reference:.2f} |",
        "",
        "Single answers' decode speed and time to first token: `bench/decode_speed.py` (its section below).",
        "",
        "`python -m bench.answer_quality`. " + machine_line(),
    ]
    publish("answer-quality", "\n".join(lines), write="--no-docs" not in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
