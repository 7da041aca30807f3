"""`apprenti train` on 50 approved pairs of the demo's kind, on the bundled model, 2 CPU cores.

Ours: `apprenti train --json` in its own process (dataset, training with our CPU defaults: 32-bit LoRA
on every layer, no dropout, 1.5 general replay pairs per team pair, 3 epochs within the 48-step budget,
padding-free batches, the LM head scored on the completions only; batched evaluation of the candidate
and the base model on the held-out split and the general-skills set, the gate, registration).
Baseline in the same run: the same team records and epochs as a bare TRL SFTTrainer script (LoRA on
every layer, no replay, float32 as ours: `bf16=False`, since TRL's SFTConfig otherwise turns bfloat16
autocast on), then the same evaluation prompts answered one at a time with `generate`. Wall time for
each, all in. The target: ours <= 4 minutes.

    .venv/bin/python -m bench.train_real [--no-docs]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bench._docs import machine_line, publish  # noqa: E402

PAIRS = 50

BARE = r"""
import json, sys, time, torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
model_dir, data, out = sys.argv[1:4]
spec = json.load(open(data))
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
model.train()
args = SFTConfig(output_dir=out + ".work", num_train_epochs=3, per_device_train_batch_size=4,
                 learning_rate=5e-4, completion_only_loss=True, logging_steps=1, save_strategy="no",
                 report_to=[], use_cpu=True, disable_tqdm=True, lr_scheduler_type="cosine", seed=42,
                 data_seed=42, optim="adamw_torch", bf16=False)
peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                  target_modules=["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"])
trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(spec["train"]),
                     processing_class=tok, peft_config=peft)
trainer.train()
m = trainer.model.eval()
for who in ("candidate", "base"):
    for prompt in spec["eval"]:
        ids = tok.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)["input_ids"]
        with torch.inference_mode():
            if who == "base":
                with m.disable_adapter():
                    m.generate(input_ids=ids, max_new_tokens=48, do_sample=False,
                               pad_token_id=tok.pad_token_id)
            else:
                m.generate(input_ids=ids, max_new_tokens=48, do_sample=False, pad_token_id=tok.pad_token_id)
"""


def _store_pairs(home: Path) -> list[dict]:
    from bot.demo import team
    from rag.focus import focus
    from storage.db import open_database
    from storage.examples import add_examples, new_example
    from storage.models import ExampleStatus

    engine = open_database(f"sqlite:///{home / 'apprenti.db'}")
    pairs = team.training_questions(PAIRS)
    rows = [
        new_example(
            q,
            team.corrected_answer(q, s),
            context=focus(s.text, q, 160),
            track="default",
            status=ExampleStatus.approved.value,
            origin="correction",
        )
        for q, s in pairs
    ]
    add_examples(engine, rows, "bench")
    engine.dispose()
    return [
        {"question": q, "context": focus(s.text, q, 160), "answer": team.corrected_answer(q, s)}
        for q, s in pairs
    ]


def main(argv: list[str]) -> int:
    from finetune.dataset import prompt_messages
    from finetune.general import SYSTEM_PROMPT, load_general
    from finetune.loading import resolve_model

    home = Path(tempfile.mkdtemp(prefix="apprenti-bench-train-"))
    pairs = _store_pairs(home)
    env = {
        **os.environ,
        "APPRENTI_HOME": str(home),
        "APPRENTI_MIN_EXAMPLES": str(PAIRS - 15),
        "APPRENTI_TRAIN_LEARNING_RATE": "5e-4",
        "APPRENTI_PII": "off",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli.main", "train", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    ours = time.perf_counter() - started
    if done.returncode not in (0, 1):
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    outcome = json.loads(done.stdout)
    training = outcome.get("training") or {}
    dataset = outcome.get("dataset") or {}

    model_dir = resolve_model("smollm2-135m-instruct")
    records = [
        {
            "prompt": prompt_messages(p["question"], p["context"], SYSTEM_PROMPT),
            "completion": [{"role": "assistant", "content": p["answer"]}],
        }
        for p in pairs
    ]
    held = dataset.get("test", 8)
    general = [i.messages() for i in load_general()]
    spec = {"train": records[held:], "eval": [r["prompt"] for r in records[:held]] + general}
    data = home / "bare.json"
    data.write_text(json.dumps(spec), encoding="utf-8")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", BARE, model_dir, str(data), str(home / "bare")],
        check=True,
        capture_output=True,
    )
    bare = time.perf_counter() - started
    verdict = outcome.get("verdict") or {}
    lines = [
        f"## `apprenti train` on {PAIRS} approved pairs, bundled model",
        "",
        "| | wall time, all in | of which training |",
        "|---|---|---|",
        f"| ours: `apprenti train` ({training.get('examples')} train + {training.get('replay_examples')} "
        f"replay, {training.get('steps')} steps; evaluation batched, {dataset.get('test')} held-out + 36 "
        f"general, candidate and base) | {ours:.0f} s | {training.get('wall_seconds', 0):.0f} s |",
        f"| baseline: bare TRL script (all layers, no replay) + one-at-a-time evaluation of the same prompts "
        f"| {bare:.0f} s | – |",
        "",
        f"Outcome: {outcome.get('status')}; " + "; ".join(verdict.get("reasons", [])) + ".",
        "",
        f"Target: ours <= 240 s — {'met' if ours <= 240 else 'missed'}. `python -m bench.train_real`. "
        + machine_line(),
    ]
    publish("train-real", "\n".join(lines), write="--no-docs" not in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
