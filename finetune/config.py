"""Training configuration: the trainer's own dataclass, and the adapter options that become a LoraConfig.

Defaults follow the QLoRA paper and what vLLM/LoRAX can serve: rank 16, alpha 32, dropout 0.05 on
the attention and MLP projections, no lm_head in modules_to_save.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

ATTENTION_AND_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MAX_SERVABLE_RANK = 16


@dataclass
class AdapterOptions:
    """What the LoRA adapter looks like."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ATTENTION_AND_MLP
    allow_high_rank: bool = False  # ranks above 16 cannot be served by vLLM's default max_lora_rank

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {self.r}")
        if self.r > MAX_SERVABLE_RANK and not self.allow_high_rank:
            raise ValueError(f"LoRA rank {self.r} is above {MAX_SERVABLE_RANK}: vLLM would refuse the adapter; "
                             "pass allow_high_rank=True if you serve it elsewhere")
        self.target_modules = tuple(self.target_modules)

    def to_peft_config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), bias="none", task_type="CAUSAL_LM",
                          modules_to_save=None)


@dataclass
class TrainConfig:
    """How one adapter is trained (TRL SFT, then optionally DPO)."""

    epochs: float = 3.0
    learning_rate: float = 2e-4
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    max_steps: int = -1  # > 0 overrides epochs (tests, smoke runs)
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    seed: int = 42
    qlora: bool = True  # NF4 + double quantisation of the frozen base
    gradient_checkpointing: bool = False
    optimizer: str | None = None  # None: paged 8-bit AdamW on CUDA, AdamW on CPU
    replay_path: str | None = None  # general data mixed in against forgetting
    replay_ratio: float = 0.2  # replay records per training record (at most the whole replay file)
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

    def resolved_optimizer(self, cuda: bool) -> str:
        if self.optimizer:
            return self.optimizer
        return "paged_adamw_8bit" if cuda else "adamw_torch"

    def hyperparameters(self) -> dict[str, Any]:
        """Everything that shapes the adapter, as plain JSON for the card."""
        values = asdict(self)
        values["adapter"]["target_modules"] = list(self.adapter.target_modules)
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
