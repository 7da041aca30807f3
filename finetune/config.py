"""Training configuration: the trainer's own dataclass, and the adapter options that become a LoraConfig.

Defaults follow the QLoRA paper and what vLLM/LoRAX can serve: rank 16, alpha 32 on the attention and
MLP projections, no lm_head in modules_to_save; no LoRA dropout (measured below).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ATTENTION_AND_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MAX_SERVABLE_RANK = 16


@dataclass
class AdapterOptions:
    """What the LoRA adapter looks like."""

    r: int = 16
    alpha: int = 32
    # peft's default. The QLoRA paper's 0.05 made a CPU step 13 % longer on the bundled model (peft
    # draws a mask and copies each projection's input) for losses within 0.3 % of these over 6 steps.
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ATTENTION_AND_MLP
    allow_high_rank: bool = False  # ranks above 16 cannot be served by vLLM's default max_lora_rank
    # Adapt only the top N transformer layers (None: all). The backward pass then stops at the
    # lowest adapted layer, so training costs about (1 + 2N/L) forwards instead of 3.
    top_layers: int | None = None

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {self.r}")
        if self.r > MAX_SERVABLE_RANK and not self.allow_high_rank:
            raise ValueError(
                f"LoRA rank {self.r} is above {MAX_SERVABLE_RANK}: vLLM would refuse the adapter; "
                "pass allow_high_rank=True if you serve it elsewhere"
            )
        self.target_modules = tuple(self.target_modules)

    def to_peft_config(self, num_layers: int | None = None):
        from peft import LoraConfig

        layers = None
        if self.top_layers and num_layers and self.top_layers < num_layers:
            layers = list(range(num_layers - self.top_layers, num_layers))
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
            modules_to_save=None,
            layers_to_transform=layers,
        )


@dataclass
class TrainConfig:
    """How one adapter is trained (TRL SFT, then optionally DPO)."""

    epochs: float = 3.0
    learning_rate: float = 2e-4
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    max_steps: int = -1  # > 0 overrides epochs and the step budget (tests, smoke runs)
    # The passes after the first are budgeted: a run makes `epochs` passes or this many optimizer
    # steps, whichever is fewer, but always one whole pass (every pair is seen). Small sets (19
    # corrections and their replay: 36 steps in 3 epochs) get every epoch; 50 pairs get 48 steps
    # instead of 69, and a track with hundreds of pairs one pass, so a CPU run stays minutes long as
    # approved pairs pile up. None or 0: no budget.
    step_budget: int | None = 48
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    seed: int = 42
    # NF4 + double quantisation of the frozen base. None: QLoRA on CUDA, where it is what lets a
    # bigger base fit, and 32-bit LoRA on a CPU, where 4-bit weights saved no time on the bundled
    # 135M model (dequantising costs what the smaller weights save) and its memory is not needed.
    qlora: bool | None = None
    # On a CPU, adapt only the top N layers (AdapterOptions.top_layers) unless the adapter options
    # say otherwise: the backward pass stops there (1.3x faster per step with 10 of 30), but on the
    # demo's corrections it learned the template far less (held-out token F1 0.30-0.40 vs 0.86 with
    # all layers). None: every layer.
    cpu_top_layers: int | None = None
    gradient_checkpointing: bool = False
    # The batch's sequences run as one row, with no padding (transformers builds a block-diagonal
    # attention mask from the restarting position ids): the same loss as padded batches, on a third
    # fewer tokens for the demo's mix of short replay pairs and longer team pairs. Used only when every
    # record fits in max_length, since TRL does not truncate padding-free rows.
    padding_free: bool = True
    optimizer: str | None = None  # None: paged 8-bit AdamW on CUDA, AdamW on CPU
    # General pairs mixed in against forgetting, answered plainly: the adapter learns that the
    # team's template belongs to the team's questions and nothing else. None: the shipped file.
    replay_path: str | None = None
    replay_ratio: float = 1.5  # replay records per training record (at most the whole replay file; 0: none)
    dpo: bool = False  # a DPO pass after SFT on (corrected, original) pairs
    dpo_beta: float = 0.1
    dpo_epochs: float = 1.0
    dpo_learning_rate: float = 5e-6
    logging_steps: int = 1
    progress_bar: bool = True
    heartbeat_every: float = 10.0  # seconds between heartbeats during training
    adapter: AdapterOptions = field(default_factory=AdapterOptions)

    def __post_init__(self):
        if isinstance(self.adapter, dict):
            self.adapter = AdapterOptions(**self.adapter)
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("epochs must be positive (or set max_steps)")
        if not 0 <= self.replay_ratio <= 10:
            raise ValueError(f"replay_ratio must be between 0 and 10, got {self.replay_ratio}")

    def planned_steps(self, records: int) -> int:
        """The `max_steps` to give the trainer for `records` records: -1 (train `epochs` epochs) when the
        budget allows them, else the budget, or one whole pass when a pass alone is longer."""
        if self.max_steps > 0:
            return self.max_steps
        per_epoch = max(math.ceil(records / self.batch_size) // self.gradient_accumulation_steps, 1)
        if not self.step_budget or math.ceil(per_epoch * self.epochs) <= self.step_budget:
            return -1
        return max(per_epoch, self.step_budget)

    def resolved_qlora(self, cuda: bool) -> bool:
        return cuda if self.qlora is None else self.qlora

    def resolved_adapter(self, cuda: bool) -> AdapterOptions:
        if cuda or self.adapter.top_layers is not None or not self.cpu_top_layers:
            return self.adapter
        from dataclasses import replace

        return replace(self.adapter, top_layers=self.cpu_top_layers)

    def resolved_replay_path(self) -> str | None:
        if self.replay_path is None:
            from finetune.general import DEFAULT_REPLAY_PATH

            return str(DEFAULT_REPLAY_PATH)
        return self.replay_path or None

    def resolved_optimizer(self, cuda: bool) -> str:
        if self.optimizer:
            return self.optimizer
        return "paged_adamw_8bit" if cuda else "adamw_torch"

    def hyperparameters(self) -> dict[str, Any]:
        """Everything that shapes the adapter, as plain JSON for the card."""
        import torch

        cuda = torch.cuda.is_available()
        values = asdict(self)
        # What this machine really used, not the "auto" placeholders.
        values["qlora"] = self.resolved_qlora(cuda)
        values["adapter"] = asdict(self.resolved_adapter(cuda))
        values["adapter"]["target_modules"] = list(self.adapter.target_modules)
        values["replay_path"] = self.resolved_replay_path()
        for name in ("progress_bar", "heartbeat_every", "logging_steps"):
            values.pop(name)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**values)
