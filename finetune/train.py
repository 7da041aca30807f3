"""Train a LoRA adapter with TRL: SFT with completion-only loss on prompt-completion records,
QLoRA (NF4, double quantisation) on CPU and CUDA, then an optional DPO pass.

Cancellation is cooperative: a callback checks `should_stop` after every step and stops the trainer;
nothing is saved for a cancelled run. The frozen base is set to training mode before any forward
pass: on CPU, bitsandbytes repacks 4-bit weights into an inference-only layout on the first
no-grad eval-mode forward, after which LoRA silently receives no gradient.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.config import TrainConfig
from finetune.loading import load_base, training_heap_settings

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class TrainingCancelled(Exception):
    """Training stopped because its cancel flag was raised; nothing was saved."""


class TrainingError(Exception):
    """Training failed; the message says why (out of memory, disk full, bad data...)."""


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    train_loss: float | None
    wall_seconds: float
    loss_log: list[dict[str, float]] = field(default_factory=list)
    dpo_loss_log: list[dict[str, float]] = field(default_factory=list)
    examples: int = 0
    replay_examples: int = 0
    device: str = "cpu"
    padding_free: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "train_loss": self.train_loss,
            "wall_seconds": round(self.wall_seconds, 2),
            "examples": self.examples,
            "replay_examples": self.replay_examples,
            "device": self.device,
            "padding_free": self.padding_free,
            "dpo": bool(self.dpo_loss_log),
        }


def _control_callback(should_stop, heartbeat, on_log, heartbeat_every: float, phase: str):
    from transformers import TrainerCallback

    class Control(TrainerCallback):
        """Loss log, heartbeat and cooperative cancellation."""

        def __init__(self):
            self.cancelled = False
            self.losses: list[dict[str, float]] = []
            self._last_beat = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.monotonic()
            if heartbeat and now - self._last_beat >= heartbeat_every:
                self._last_beat = now
                heartbeat()
            if should_stop and should_stop():
                self.cancelled = True
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                entry = {
                    "phase": phase,
                    "step": state.global_step,
                    "epoch": round(state.epoch or 0.0, 4),
                    "loss": float(logs["loss"]),
                }
                if "learning_rate" in logs:
                    entry["learning_rate"] = float(logs["learning_rate"])
                self.losses.append(entry)
                if on_log:
                    on_log(entry)

    return Control()


def mix_replay(records: Sequence[dict], replay: Sequence[dict], ratio: float, seed: int) -> list[dict]:
    """The training records plus up to ratio x len(records) replay records, shuffled deterministically."""
    take = min(len(replay), int(round(len(records) * ratio)))
    rng = random.Random(seed)
    mixed = list(records) + rng.sample(list(replay), take)
    rng.shuffle(mixed)
    return mixed


def _sft_config(
    config: TrainConfig, work_dir: Path, cuda: bool, padding_free: bool = False, max_steps: int = -1
):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(work_dir),
        num_train_epochs=config.epochs,
        max_steps=max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_length=None if padding_free else config.max_length,
        completion_only_loss=True,
        packing=False,
        padding_free=padding_free,
        optim=config.resolved_optimizer(cuda),
        gradient_checkpointing=config.gradient_checkpointing,
        logging_steps=config.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        bf16=cuda,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        disable_tqdm=not config.progress_bar,
        dataset_num_proc=None,
    )


def score_completions_only() -> bool:
    """Make TRL's fused LM head score only the positions that have a label on a CPU as well.

    TRL projects every position through the LM head except on Triton devices, because a varying
    number of positions would recompile Neuron graphs; a CPU has no graphs to recompile, and with
    completion-only loss most positions are prompt. The loss is the same to the last digit; on the
    bundled model a training step is about 13 % shorter (the head is 49,152 words wide). Returns
    whether TRL's switch was found (a TRL without it trains as before)."""
    import trl.trainer.utils as trl_utils

    choose = getattr(trl_utils, "_use_triton", None)
    if choose is None:
        return False
    if getattr(choose, "_apprenti", False):
        return True

    def compact(device) -> bool:
        return device.type == "cpu" or choose(device)

    compact._apprenti = True
    trl_utils._use_triton = compact
    return True


def longest_record(tokenizer, records: Sequence[dict]) -> int:
    """The most tokens any prompt-completion record takes in the chat template."""
    longest = 0
    for record in records:
        ids = tokenizer.apply_chat_template(
            list(record["prompt"]) + list(record["completion"]), tokenize=True, return_dict=True
        )["input_ids"]
        longest = max(longest, len(ids))
    return longest


def _describe(exc: BaseException) -> str:
    import errno

    import torch

    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return (
            "out of memory while training: lower APPRENTI_TRAIN_MAX_LENGTH or the batch size, "
            f"or use a smaller base model ({exc})"
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"disk full while writing the adapter: free space in the adapters folder ({exc})"
    return f"{type(exc).__name__}: {exc}"


def load_for_training(base_model: str, config: TrainConfig):
    """The base model ready for LoRA training (4-bit when config.qlora) and its tokenizer."""
    import torch

    training_heap_settings()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    qlora = config.resolved_qlora(cuda)
    if qlora:
        # bf16 for everything that is not 4-bit (embeddings, norms, lm_head), on CPU as on CUDA: the
        # activations then flow in bf16 as in 16-bit LoRA instead of fp32. The 4-bit matmuls compute in
        # quantization_config's dtype (fp32 on CPU, where bf16 matmuls are several times slower).
        model, tokenizer, path = load_base(base_model, load_in_4bit=True, device=device, dtype=torch.bfloat16)
    else:
        model, tokenizer, path = load_base(base_model, device=device)
    # Before ANY forward pass: see the module docstring (bitsandbytes' CPU repacking trap).
    model.train()
    if qlora:
        _prepare_4bit(model, config.gradient_checkpointing)
        model.train()
    model.config.use_cache = False
    return model, tokenizer, path


def _prepare_4bit(model, gradient_checkpointing: bool) -> None:
    """What peft's prepare_model_for_kbit_training does, minus its upcast of every non-4-bit parameter
    to fp32: that upcast turns the embeddings' output, hence the whole residual stream and every saved
    activation, into fp32, which cost more memory than 4-bit weights save on a small model. LoRA
    weights are cast by TRL (bf16 for quantised bases) and the optimiser keeps its own state."""
    for param in model.parameters():
        param.requires_grad_(False)
    if gradient_checkpointing:
        model.enable_input_require_grads()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def train_adapter(
    base_model: str,
    records: Sequence[dict],
    output_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    preferences: Sequence[dict] = (),
    replay: Sequence[dict] | None = None,
    should_stop: Callable[[], bool] | None = None,
    heartbeat: Callable[[], Any] | None = None,
    on_log: Callable[[dict], Any] | None = None,
    model=None,
    tokenizer=None,
) -> TrainResult:
    """Train an adapter on prompt-completion records and save it as a PEFT folder in `output_dir`.

    `model`/`tokenizer` may be passed already loaded with `load_for_training` (benchmarks, tests).
    Raises TrainingCancelled when `should_stop()` became true, TrainingError on failure; in both
    cases `output_dir` is left absent."""
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    config = config or TrainConfig()
    if not records:
        raise TrainingError("no training records: the dataset's train split is empty")
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise TrainingError(f"{output_dir} already exists: an adapter folder is never overwritten")
    work_dir = output_dir.with_name(output_dir.name + ".work")
    cuda = torch.cuda.is_available()
    replay_path = config.resolved_replay_path()
    if replay is None and replay_path and config.replay_ratio > 0:
        from finetune.formats import read_records

        # Asked as the track's questions are: with its system prompt.
        replay = read_records(
            replay_path,
            system_prompt=records[0]["prompt"][0]["content"]
            if records[0]["prompt"][0]["role"] == "system"
            else None,
        )
    mixed = mix_replay(records, replay or [], config.replay_ratio, config.seed)
    training_heap_settings()
    started = time.perf_counter()
    try:
        if model is None:
            model, tokenizer, _ = load_for_training(base_model, config)
        else:
            model.train()
        padding_free = config.padding_free and longest_record(tokenizer, mixed) <= config.max_length
        score_completions_only()
        control = _control_callback(should_stop, heartbeat, on_log, config.heartbeat_every, "sft")
        trainer = SFTTrainer(
            model=model,
            args=_sft_config(config, work_dir, cuda, padding_free, config.planned_steps(len(mixed))),
            train_dataset=Dataset.from_list(list(mixed)),
            processing_class=tokenizer,
            peft_config=config.resolved_adapter(cuda).to_peft_config(
                getattr(model.config, "num_hidden_layers", None)
            ),
            callbacks=[control],
        )
        output = trainer.train()
        if control.cancelled:
            raise TrainingCancelled("training was cancelled")
        peft_model = trainer.model
        dpo_losses: list[dict] = []
        if config.dpo and preferences:
            dpo_losses = _dpo_pass(
                peft_model, tokenizer, preferences, config, work_dir, cuda, should_stop, heartbeat, on_log
            )
        tmp_dir = output_dir.with_name(output_dir.name + ".partial")
        shutil.rmtree(tmp_dir, ignore_errors=True)
        peft_model.save_pretrained(str(tmp_dir))
        (tmp_dir / "training_log.jsonl").write_text(
            "".join(json.dumps(e) + "\n" for e in control.losses + dpo_losses), encoding="utf-8"
        )
        missing = [name for name in ADAPTER_FILES if not (tmp_dir / name).is_file()]
        if missing:
            raise TrainingError(f"the saved adapter lacks {', '.join(missing)}")
        tmp_dir.replace(output_dir)
        return TrainResult(
            adapter_dir=output_dir,
            steps=output.global_step,
            train_loss=float(output.training_loss) if output.training_loss is not None else None,
            wall_seconds=time.perf_counter() - started,
            loss_log=control.losses,
            dpo_loss_log=dpo_losses,
            examples=len(records),
            replay_examples=len(mixed) - len(records),
            device="cuda" if cuda else "cpu",
            padding_free=padding_free,
        )
    except TrainingCancelled:
        shutil.rmtree(output_dir.with_name(output_dir.name + ".partial"), ignore_errors=True)
        raise
    except (TrainingError, KeyboardInterrupt):
        shutil.rmtree(output_dir.with_name(output_dir.name + ".partial"), ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(output_dir.with_name(output_dir.name + ".partial"), ignore_errors=True)
        raise TrainingError(_describe(exc)) from exc
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _dpo_pass(
    peft_model,
    tokenizer,
    preferences,
    config: TrainConfig,
    work_dir: Path,
    cuda: bool,
    should_stop,
    heartbeat,
    on_log,
) -> list[dict]:
    """DPO on (corrected, original) pairs, continuing the SFT adapter; the reference is the base model
    (the adapter disabled)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        output_dir=str(work_dir / "dpo"),
        num_train_epochs=config.dpo_epochs,
        max_steps=config.max_steps,
        learning_rate=config.dpo_learning_rate,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        beta=config.dpo_beta,
        max_length=config.max_length,
        optim=config.resolved_optimizer(cuda),
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to=[],
        seed=config.seed,
        bf16=cuda,
        use_cpu=not cuda,
        disable_tqdm=not config.progress_bar,
    )
    control = _control_callback(should_stop, heartbeat, on_log, config.heartbeat_every, "dpo")
    peft_model.train()
    trainer = DPOTrainer(
        model=peft_model,
        args=args,
        train_dataset=Dataset.from_list(list(preferences)),
        processing_class=tokenizer,
        callbacks=[control],
    )
    trainer.train()
    if control.cancelled:
        raise TrainingCancelled("training was cancelled during the DPO pass")
    return control.losses
