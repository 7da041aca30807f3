"""Decode speed of one answer on the bundled model (SmolLM2-135M-Instruct), a LoRA adapter attached.

Prompts: the demo handbook's 16 questions (English and French) in the plain layout small models get
("Text: <the right section> Question: …", bot/demo/questions.jsonl), up to 64 new tokens, greedy, one
answer at a time, the system-prefix cache off (it is measured apart below). The adapter: rank 16 on
every attention and MLP projection (training's defaults), its B matrices drawn at random so that it
changes the answers as a trained one does.

Rows, same prompts and weights, in one run:
- baseline: plain transformers + peft `generate` (float32, the adapter attached, unmerged);
- ours: `ChatModel.generate` as served (finetune/decode.py: prefill on the loaded weights, each next
  token on a copy with the adapter merged in and the projections in bfloat16, one prompt-lookup draft
  per step); and, to show where the time goes, the same loop on a float32 merged copy, and with no
  draft.

Then time to first token for a ~600-token RAG prompt with and without the system-prefix cache.

    .venv/bin/python -m bench.decode_speed [--no-docs]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench._docs import machine_line, publish  # noqa: E402
from bench._handbook import SYSTEM, reference_prompts  # noqa: E402
from bench._handbook import items as handbook_items  # noqa: E402

NEW_TOKENS = 64
ADAPTER = "bench"


def make_adapter(model, folder: Path) -> Path:
    """A rank-16 LoRA on every projection of `model`'s weights, B drawn at random, saved as training
    saves one; the model is left as it was."""
    import torch
    from peft import get_peft_model

    from finetune.config import AdapterOptions

    torch.manual_seed(0)
    peft = get_peft_model(model, AdapterOptions().to_peft_config(), adapter_name=ADAPTER)
    for name, param in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.002)
    peft.save_pretrained(folder)
    peft.unload()
    return folder / ADAPTER if (folder / ADAPTER).is_dir() else folder


def peft_generate(chat, messages) -> tuple[str, int, float]:
    """The baseline: peft's generate() with the adapter attached, float32, greedy."""
    import torch

    ids = chat.tokenizer(chat.render(messages), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with chat.using(ADAPTER) as model, torch.inference_mode():
        started = time.perf_counter()
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            pad_token_id=chat.tokenizer.pad_token_id,
        )
        seconds = time.perf_counter() - started
    new = out[0, ids.shape[1] :]
    return chat.tokenizer.decode(new, skip_special_tokens=True).strip(), int(new.shape[0]), seconds


def ours(chat, messages) -> tuple[str, int, float]:
    started = time.perf_counter()
    answer = chat.generate(messages, adapter=ADAPTER, max_new_tokens=NEW_TOKENS)
    return answer.text, answer.completion_tokens, time.perf_counter() - started


def measure(chat, conversations, run, **settings) -> dict:
    for name, value in settings.items():
        setattr(chat, name, value)
    run(chat, conversations[0])  # warm-up (builds the served copy)
    texts, tokens, seconds = [], 0, 0.0
    rates = []
    for messages in conversations:
        text, n, s = run(chat, messages)
        texts.append(text)
        tokens += n
        seconds += s
        rates.append(n / s)
    return {"texts": texts, "tokens": tokens, "seconds": seconds, "median": statistics.median(rates)}


def ttft(chat) -> dict:
    from finetune.prefix_cache import PrefixCache

    system = (SYSTEM + " Use only the text you are given. ") * 30
    passage = "Request holidays in the HR portal at least two weeks in advance. " * 12
    messages = [
        {"role": "system", "content": system.strip()},
        {"role": "user", "content": f"Text: {passage}\n\nQuestion: How far in advance?"},
    ]
    tokens = chat.count_tokens(chat.render(messages))
    prefix = chat.count_tokens(chat.render([messages[0]]))

    def first_token() -> float:
        started = time.perf_counter()
        chat.generate(messages, adapter=ADAPTER, max_new_tokens=1)
        return time.perf_counter() - started

    chat.prefix_cache = None
    first_token()
    cold = statistics.median(first_token() for _ in range(3))
    chat.prefix_cache = PrefixCache()
    first_token()  # fills the cache
    warm = statistics.median(first_token() for _ in range(3))
    chat.prefix_cache = None
    return {"tokens": tokens, "prefix": prefix, "cold": cold, "warm": warm}


def main(argv: list[str]) -> int:
    import torch

    from finetune.answers import contains_answer
    from finetune.bundled import DEFAULT
    from finetune.model import ChatModel

    torch.set_num_threads(os.cpu_count() or 2)
    chat = ChatModel.load(DEFAULT)
    chat.load_adapter(ADAPTER, make_adapter(chat.model, Path(tempfile.mkdtemp(prefix="apprenti-decode-"))))
    chat.prefix_cache = None
    chat.stop_loops = False  # the baseline has no loop stop: the same length limit for both
    items = handbook_items()
    conversations = reference_prompts(items)
    base = measure(chat, conversations, peft_generate)
    rows = {
        "ours": measure(
            chat, conversations, ours, fast_decode=True, decode_weights="bfloat16", prompt_lookup=1
        ),
        "float32": measure(chat, conversations, ours, decode_weights="float32", prompt_lookup=1),
        "nodraft": measure(chat, conversations, ours, decode_weights="bfloat16", prompt_lookup=0),
    }
    first = ttft(chat)

    def rate(r: dict) -> float:
        return r["tokens"] / r["seconds"]

    def right(r: dict) -> int:
        return sum(contains_answer(a, i["answers"]) for a, i in zip(r["texts"], items, strict=True))

    def same(r: dict) -> int:
        return sum(a == b for a, b in zip(r["texts"], base["texts"], strict=True))

    n = len(conversations)
    speedup = rate(rows["ours"]) / rate(base)
    verdict = "met" if speedup >= 2 else "**missed**"
    table = [
        "| | tokens | seconds | tokens/s (all) | tokens/s (median) | speed-up | same text as baseline "
        "| right answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in [
        ("baseline: transformers + peft `generate`, float32, adapter attached", base),
        ("**ours**: `ChatModel.generate` (merged bfloat16 copy, one draft)", rows["ours"]),
        ("ours, float32 merged copy, one draft", rows["float32"]),
        ("ours, merged bfloat16 copy, no draft", rows["nodraft"]),
    ]:
        table.append(
            f"| {label} | {r['tokens']} | {r['seconds']:.1f} | {rate(r):.1f} | {r['median']:.1f} "
            f"| {rate(r) / rate(base):.2f}× | {same(r)}/{n} | {right(r)}/{n} |"
        )
    lines = [
        "## Decode: one answer, the bundled model with an adapter attached",
        "",
        f"The demo handbook's {n} questions (English and French) in the plain layout, up to {NEW_TOKENS} "
        "new tokens, greedy, one answer at a time, prefix cache and loop stop off; a rank-16 LoRA on every "
        "projection (random B, so it changes the answers). Time includes the prefill. Right answers: the "
        "answer contains an accepted string.",
        "",
        *table,
        "",
        f"Target: ≥ 2× the baseline — {verdict} ({speedup:.2f}×). A step reads the weights once; a bfloat16 "
        "copy reads half the bytes, and on this CPU (AVX2) a two-row step costs about one, so one draft "
        "token copied from the prompt is nearly free while more cost more than they save. Answers that "
        "differ from the baseline's do so where rounding turns a near tie the other way (a merged weight "
        "sums in another order than peft's two paths, and bfloat16 rounds more); "
        "`APPRENTI_DECODE_WEIGHTS=float32` is the float32 row.",
        "",
        f"Time to first token, {first['tokens']}-token RAG prompt, adapter attached: {first['cold']:.2f} s "
        f"without the prefix cache, {first['warm']:.2f} s with it (the {first['prefix']}-token system "
        "prefix's KV cache reused).",
        "",
        "`python -m bench.decode_speed`. " + machine_line(),
    ]
    publish("decode-speed", "\n".join(lines), write="--no-docs" not in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
