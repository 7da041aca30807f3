"""Our training path (finetune.train.train_adapter) vs a bare TRL SFTTrainer script on the same data
and settings; each run in a fresh process, interleaved, median wall time. Target: ours <= 1.1x."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._docs import write_section

STEPS, BATCH, MAX_LEN, REPEATS = 30, 8, 96, 3

BARE = r"""
import json, sys, time, torch
torch.set_num_threads(1)
t0 = time.perf_counter()
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
model_dir, data, out, steps, batch, max_len = sys.argv[1:7]
records = json.load(open(data))
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
model.train()
args = SFTConfig(output_dir=out + ".work", max_steps=int(steps), per_device_train_batch_size=int(batch),
                 learning_rate=2e-4, max_length=int(max_len), completion_only_loss=True, logging_steps=1,
                 save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                 lr_scheduler_type="cosine", warmup_steps=0.03, seed=42, data_seed=42, optim="adamw_torch")
peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                  target_modules=["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"])
trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(records), processing_class=tok,
                     peft_config=peft)
trainer.train()
trainer.model.save_pretrained(out)
print(json.dumps({"wall": time.perf_counter() - t0}))
"""

OURS = r"""
import json, sys, time, torch
torch.set_num_threads(1)
t0 = time.perf_counter()
from finetune.config import TrainConfig
from finetune.train import train_adapter
model_dir, data, out, steps, batch, max_len = sys.argv[1:7]
records = json.load(open(data))
train_adapter(model_dir, records, out, TrainConfig(max_steps=int(steps), batch_size=int(batch),
              max_length=int(max_len), qlora=False, replay_ratio=0, progress_bar=False))
print(json.dumps({"wall": time.perf_counter() - t0}))
"""


def _run(code: str, *args) -> float:
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=root,
        env={
            "PYTHONPATH": root,
            "HF_HUB_OFFLINE": "1",
            "PATH": "/usr/bin:/bin",
            "TOKENIZERS_PARALLELISM": "false",
        },
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["wall"]


def main() -> int:
    from finetune.dataset import prompt_messages
    from finetune.tiny import make_tiny

    teams = {
        "alpha": "Badge office, floor two.",
        "bravo": "Call the help desk.",
        "delta": "Ask Marie in finance.",
        "gamma": "Use the holiday form.",
    }
    records = [
        {
            "prompt": prompt_messages(f"Question {i} about {t}?"),
            "completion": [{"role": "assistant", "content": a}],
        }
        for i in range(16)
        for t, a in teams.items()
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny(tmp / "model", size="tiny", initializer_range=0.1)
        data = tmp / "data.json"
        data.write_text(json.dumps(records))
        ours, bare = [], []
        for i in range(REPEATS):  # interleaved so machine load hits both alike
            bare.append(_run(BARE, model, data, tmp / f"bare{i}", STEPS, BATCH, MAX_LEN))
            ours.append(_run(OURS, model, data, tmp / f"ours{i}", STEPS, BATCH, MAX_LEN))
    o, b = statistics.median(ours), statistics.median(bare)
    ratio = o / b
    print(
        f"ours (finetune.train): {o:.2f} s   bare TRL SFTTrainer: {b:.2f} s   ratio {ratio:.2f}x (target <= "
        "1.1x)"
    )
    write_section(
        "train-overhead",
        "\n".join(
            [
                "## Training overhead: our trainer vs a bare TRL script",
                "",
                f"Same data ({len(records)} prompt-completion records), same settings (LoRA r=16, alpha=32, "
                f"no dropout, on attention+MLP, lr 2e-4, {STEPS} steps, batch {BATCH}, max length "
                f"{MAX_LEN}, completion-only loss), random tiny Llama on CPU with 1 thread; wall time of a "
                f"fresh process from imports to the saved adapter, median of {REPEATS} interleaved runs. "
                "Measured by `python -m bench.train_overhead`.",
                "",
                "| | wall time |",
                "|---|---|",
                f"| bare TRL `SFTTrainer` script (baseline) | {b:.2f} s |",
                "| `finetune.train.train_adapter` (loss log, heartbeat, cancellation, atomic save) | "
                f"{o:.2f} s |",
                "",
                f"Ratio ours / bare: **{ratio:.2f}×** (target ≤ 1.1×: "
                f"{'meets it' if ratio <= 1.1 else 'MISSES it'}). Runs: ours "
                f"{', '.join(f'{x:.1f}' for x in ours)} s; bare {', '.join(f'{x:.1f}' for x in bare)} s. "
                f"Machine: {platform.machine()}, Python {platform.python_version()}, no GPU in this run.",
            ]
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
