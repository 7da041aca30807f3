"""Peak memory of QLoRA (NF4 + double quantisation) vs 16-bit (bf16) LoRA training on the ~100M
"medium" random model on CPU, each in a fresh process. Target: QLoRA <= 0.6x."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._docs import write_section

STEPS, BATCH, MAX_LEN = 3, 2, 128

CHILD = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
from finetune.config import TrainConfig
from finetune.loading import load_base, training_heap_settings
from finetune.train import load_for_training, train_adapter
import peft, trl, datasets  # everything imported before the baseline reading
mode, model_dir, out, steps, batch, max_len = sys.argv[1:7]
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
baseline = rss_mb()
config = TrainConfig(max_steps=int(steps), batch_size=int(batch), max_length=int(max_len),
                     qlora=(mode == "qlora"), progress_bar=False)
if mode == "qlora":
    model, tok, _ = load_for_training(model_dir, config)
else:  # the same process settings and loader as ours, a bf16 base
    training_heap_settings()
    model, tok, _ = load_base(model_dir, dtype=torch.bfloat16, device="cpu")
    model.train()
load_peak, after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rss_mb()
records = [{"prompt": [{"role": "user", "content": f"Question number {i} about the expense policy?"}],
            "completion": [{"role": "assistant", "content": "Expense reports are due on the fifth. " * 6}]}
           for i in range(16)]
train_adapter(model_dir, records, out, config, model=model, tokenizer=tok)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_mb": peak, "baseline_mb": baseline, "load_peak_mb": load_peak,
                  "after_load_mb": after_load}))
"""


def _child(mode: str, model_dir: Path, out: Path) -> dict:
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(model_dir), str(out), str(STEPS), str(BATCH), str(MAX_LEN)],
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
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    from finetune.tiny import make_tiny

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = make_tiny(tmp / "medium", size="medium")
        params = json.loads((model_dir / "apprenti-tiny.json").read_text())["parameters"]
        lora = _child("lora16", model_dir, tmp / "lora16")
        qlora = _child("qlora", model_dir, tmp / "qlora")
    total = qlora["peak_mb"] / lora["peak_mb"]
    above = (qlora["peak_mb"] - qlora["baseline_mb"]) / (lora["peak_mb"] - lora["baseline_mb"])
    print(
        f"peak RSS: QLoRA {qlora['peak_mb']:.0f} MB, bf16 LoRA {lora['peak_mb']:.0f} MB ({total:.2f}x); "
        f"above the import baseline: {above:.2f}x (target <= 0.6x)"
    )
    verdict = "meets it" if above <= 0.6 else "MISSES it"
    write_section(
        "qlora-memory",
        "\n".join(
            [
                "## QLoRA vs 16-bit LoRA: peak training memory (CPU)",
                "",
                f'Random Llama "medium" ({params / 1e6:.0f}M parameters), {STEPS} training steps, batch '
                f"{BATCH}, max length {MAX_LEN}, CPU, each mode in a fresh process (peak RSS from "
                "`getrusage`; the import baseline is the RSS after torch/transformers/peft/trl are "
                "imported, before the model is loaded). Measured by `python -m bench.qlora_memory`.",
                "",
                "| | peak RSS | above import baseline | peak while loading (above baseline) | held after "
                "loading (above baseline) |",
                "|---|---|---|---|---|",
                *(
                    f"| {label} | {r['peak_mb']:.0f} MB | {r['peak_mb'] - r['baseline_mb']:.0f} MB | "
                    f"{r['load_peak_mb'] - r['baseline_mb']:.0f} MB | "
                    f"{r['after_load_mb'] - r['baseline_mb']:.0f} MB |"
                    for label, r in (("bf16 LoRA (baseline)", lora), ("QLoRA NF4 + double quant", qlora))
                ),
                "",
                f"Ratio QLoRA / bf16 LoRA: **{above:.2f}×** of the memory training adds (target ≤ 0.6×: "
                f"{verdict}); {total:.2f}× of the whole process, which also holds "
                f"~{lora['baseline_mb']:.0f} MB of libraries. Both modes load through "
                "`finetune.loading.load_base` (checkpoint read tensor by tensor with pread, not mmap: an "
                "mmapped float32 checkpoint alone put ~400 MB of file pages in the process while loading, "
                "and QLoRA's fp32 non-4-bit parameters stayed views pinning the whole file) and train "
                "through `train_adapter` with the same heap settings (`training_heap_settings`: large "
                "buffers are returned to the OS when freed). QLoRA keeps its non-4-bit parameters in bf16 "
                "(peft's `prepare_model_for_kbit_training` upcast them to fp32, making every activation "
                "fp32) and computes the 4-bit matmuls in fp32 on CPU (bf16 compute cut memory little more "
                "and made training ~8× slower here). What remains for QLoRA is mostly activations (~same as "
                "bf16 LoRA) plus per-layer dequantisation buffers; the weights are ~51 MB vs ~195 MB. No "
                "CUDA GPU was available for this run, so no GPU tokens/s or peak GPU memory is reported; "
                f"paged 8-bit AdamW is used only on CUDA. Machine: {platform.machine()}, {os.cpu_count()} "
                f"cores, load average {os.getloadavg()[0]:.2f} at the end, Python "
                f"{platform.python_version()}.",
            ]
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
