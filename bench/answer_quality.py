"""RAG answer accuracy and decode speed on the bundled model (SmolLM2-135M-Instruct), 2 CPU cores.

Accuracy: the demo handbook's 16 questions (bot/demo/questions.jsonl, English and French) answered
through the whole pipeline (`Assistant.answer_many`: hybrid retrieval, the plain layout, batched
greedy answers), against two references in the same run: the numbered layout (titled sources and an
instruction to cite them, as for big models), and the plain prompt given the right passage by hand
("Text: <the whole right section> Question: …"). A hit: the answer contains an accepted string.

Decode: a RAG answer of up to 64 new tokens, one at a time, greedy, on the base model: ours
(ChatModel.generate: prompt lookup decoding) against plain transformers `generate` (float32), same
prompts and weights; and time to first token of a ~600-token RAG prompt with and without the
system-prefix cache.

    .venv/bin/python -m bench.answer_quality [--no-docs]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bench._docs import machine_line, publish  # noqa: E402

QUESTIONS = ROOT / "bot" / "demo" / "questions.jsonl"
HANDBOOK = ROOT / "bot" / "demo" / "handbook"


def _accuracy(answers, items) -> float:
    from finetune.answers import contains_answer

    return sum(contains_answer(a, i["answers"]) for a, i in zip(answers, items, strict=True)) / len(items)


def _right_passage(item) -> str:
    """The section of the item's document that holds an accepted answer (the reference's passage)."""
    text = (HANDBOOK / item["source"]).read_text(encoding="utf-8")
    sections = [s.strip() for s in text.split("\n## ") if s.strip()]
    from finetune.answers import contains_answer

    return next((s for s in sections if contains_answer(s, item["answers"])), sections[-1]).replace("\n", " ")


def main(argv: list[str]) -> int:
    import torch

    from bot.cli.rag import ingest_paths
    from bot.llm import BASE
    from bot.runtime import Runtime
    from bot.settings import load_settings

    torch.set_num_threads(os.cpu_count() or 2)
    items = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
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
    system = "You are a helpful assistant. Answer briefly and exactly."
    reference_prompts = [
        [
            {"role": "system", "content": system},
            {"role": "user", "content": f"Text: {_right_passage(i)}\n\nQuestion: {i['question']}"},
        ]
        for i in items
    ]
    reference = _accuracy([g.text for g in model.generate_batch(reference_prompts, max_new_tokens=64)], items)

    decode = _decode(model, reference_prompts[:6])
    ttft = _ttft(model)
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
        "Decode, one RAG answer at a time (6 prompts, up to 64 new tokens, greedy):",
        "",
        "| | tokens/s (median) |",
        "|---|---|",
        f"| ours: ChatModel.generate (prompt lookup decoding) | {decode['ours']:.1f} |",
        f"| baseline: transformers `generate`, float32 | {decode['plain']:.1f} |",
        f"| speed-up | {decode['ours'] / decode['plain']:.2f}x (same text: {decode['same']}) |",
        "",
        f"Time to first token, {ttft['tokens']}-token RAG prompt: {ttft['cold']:.2f} s without the prefix "
        f"cache, {ttft['warm']:.2f} s with it (the {ttft['prefix']}-token system prefix's KV cache reused).",
        "",
        "`python -m bench.answer_quality`. " + machine_line(),
    ]
    publish("answer-quality", "\n".join(lines), write="--no-docs" not in argv)
    return 0


def _decode(model, prompts) -> dict:
    import torch

    rates = {"ours": [], "plain": []}
    same = True
    for messages in prompts:
        ids = model.tokenizer(model.render(messages), add_special_tokens=False, return_tensors="pt")[
            "input_ids"
        ]
        with torch.inference_mode():
            started = time.perf_counter()
            out = model.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=64,
                do_sample=False,
                pad_token_id=model.tokenizer.pad_token_id,
            )
            plain_s = time.perf_counter() - started
        plain = model.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        saved, model.prefix_cache = model.prefix_cache, None
        started = time.perf_counter()
        ours = model.generate(messages, max_new_tokens=64)
        ours_s = time.perf_counter() - started
        model.prefix_cache = saved
        rates["plain"].append((out.shape[1] - ids.shape[1]) / plain_s)
        rates["ours"].append(ours.completion_tokens / ours_s)
        same = same and ours.text == plain
    return {
        "ours": statistics.median(rates["ours"]),
        "plain": statistics.median(rates["plain"]),
        "same": same,
    }


def _ttft(model) -> dict:
    from finetune.prefix_cache import PrefixCache

    system = ("You are a helpful assistant. Answer briefly and exactly. " * 40).strip()
    passage = "Request holidays in the HR portal at least two weeks in advance. " * 12
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Text: {passage}\n\nQuestion: How far in advance?"},
    ]
    tokens = model.count_tokens(model.render(messages))
    prefix = model.count_tokens(model.render([messages[0]]))
    saved = model.prefix_cache
    model.prefix_cache = None
    started = time.perf_counter()
    model.generate(messages, max_new_tokens=1)
    cold = time.perf_counter() - started
    model.prefix_cache = PrefixCache()
    model.generate(messages, max_new_tokens=1)  # fills the cache
    started = time.perf_counter()
    model.generate(messages, max_new_tokens=1)
    warm = time.perf_counter() - started
    model.prefix_cache = saved
    return {"tokens": tokens, "prefix": prefix, "cold": cold, "warm": warm}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
