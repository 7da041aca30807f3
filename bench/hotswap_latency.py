"""Hot-swap latency: activation and rollback through the registry, noticed by the watcher and swapped
on the loaded base, vs a full reload of the model with the adapter, on the ~30M "small" random model.
Target: <= 0.05x."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._docs import write_section

REPEATS = 5


def _random_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finetune.config import ATTENTION_AND_MLP

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft = get_peft_model(
        model,
        LoraConfig(
            r=16,
            lora_alpha=32,
            target_modules=list(ATTENTION_AND_MLP),
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        ),
    )
    peft.save_pretrained(out)
    return out


def main() -> int:
    import torch

    torch.set_num_threads(1)
    from finetune.hotswap import AdapterWatcher
    from finetune.model import ChatModel
    from finetune.registry import Registry
    from finetune.tiny import make_tiny
    from storage.db import open_database

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = make_tiny(tmp / "small", size="small")
        engine = open_database(f"sqlite:///{tmp / 'db.sqlite'}")
        registry = Registry(engine, tmp / "adapters")
        names = []
        chat = ChatModel.load(str(model_dir))
        watcher = AdapterWatcher(engine, chat)
        for seed in (1, 2):
            folder = _random_adapter(model_dir, tmp / f"a{seed}", seed)
            names.append(
                registry.register(folder, track="default", base_model=str(model_dir), status="candidate").name
            )
        registry.activate(names[0], "bench")
        watcher.refresh()  # serves v1; v2, a candidate, is preloaded on the same base

        activate, rollback, reload = [], [], []
        for _ in range(REPEATS):
            t = time.perf_counter()
            registry.activate(names[1], "bench")
            watcher.refresh()
            assert watcher.adapter_for("default") == names[1]
            activate.append(time.perf_counter() - t)
            t = time.perf_counter()
            registry.rollback("default", "bench", to=names[0])
            watcher.refresh()
            assert watcher.adapter_for("default") == names[0]
            rollback.append(time.perf_counter() - t)
            t = time.perf_counter()
            fresh = ChatModel.load(str(model_dir))
            fresh.load_adapter(names[0], registry.get(names[0]).path)
            reload.append(time.perf_counter() - t)
            del fresh
        params = sum(p.numel() for p in chat.model.parameters())
    a, r, full = (statistics.median(x) * 1000 for x in (activate, rollback, reload))
    ra, rr = a / full, r / full
    print(
        f"activate {a:.1f} ms  rollback {r:.1f} ms  full reload {full:.1f} ms  ratios {ra:.3f}x / {rr:.3f}x"
    )
    verdict = "meets it" if max(ra, rr) <= 0.05 else "MISSES it"
    write_section(
        "hotswap",
        "\n".join(
            [
                "## Hot swap: activation and rollback vs a full reload",
                "",
                f'Random Llama "small" ({params / 1e6:.0f}M parameters incl. LoRA), CPU, 1 thread, SQLite '
                "registry. Activation/rollback = the registry transaction (SQLite, audited, card updated) + "
                "`AdapterWatcher.refresh()` until the serving process answers with the new version; the "
                "watcher preloads candidates and keeps the last versions resident, so the swap itself is a "
                "pointer switch on the loaded base. Full reload = loading the base model and the adapter "
                f"from disk. Median of {REPEATS} interleaved repetitions. Measured by `python -m "
                "bench.hotswap_latency`.",
                "",
                "| | latency |",
                "|---|---|",
                f"| full model reload (baseline) | {full:.1f} ms |",
                f"| activate a new version (hot swap) | {a:.1f} ms |",
                f"| roll back (hot swap) | {r:.1f} ms |",
                "",
                f"Ratios: activation **{ra:.3f}×**, rollback **{rr:.3f}×** (target ≤ 0.05×: {verdict}). "
                f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average "
                f"{os.getloadavg()[0]:.2f} at the end, Python {platform.python_version()}, "
                "no GPU in this run.",
            ]
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
