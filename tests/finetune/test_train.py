from __future__ import annotations

import json

import pytest
import torch

from finetune.config import AdapterOptions, TrainConfig
from finetune.dataset import prompt_messages
from finetune.train import TrainingCancelled, load_for_training, train_adapter

from .toy import questions


def _records(n=4):
    return [
        {"prompt": prompt_messages(q), "completion": [{"role": "assistant", "content": a}]}
        for q, a in questions(n)
    ]


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality: packed 4-bit weights stored in float32 containers may hold NaN patterns."""
    return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def _config(**kw):
    values = dict(max_steps=3, batch_size=4, max_length=96, learning_rate=1e-2, progress_bar=False)
    return TrainConfig(**{**values, **kw})


@pytest.mark.parametrize("qlora", [False, True], ids=["lora16", "qlora-nf4"])
def test_a_few_steps_change_lora_weights_and_not_the_base(tiny_model, tmp_path, qlora):
    config = _config(qlora=qlora)
    model, tokenizer, _ = load_for_training(tiny_model, config)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers_before = {n: b.detach().clone() for n, b in model.named_buffers()}
    seen = []
    result = train_adapter(
        tiny_model,
        _records(),
        tmp_path / "adapter",
        config,
        model=model,
        tokenizer=tokenizer,
        on_log=seen.append,
    )
    assert result.steps == 3 and len(seen) == 3 and all(e["loss"] > 0 for e in seen)

    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(
        __import__("transformers").AutoModelForCausalLM.from_pretrained(tiny_model), str(tmp_path / "adapter")
    )
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b), "LoRA B starts at zero: it must have moved"
    # The frozen base (4-bit packed weights included) did not change.
    for name, param in model.named_parameters():
        if "lora_" in name:
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        before = base_before.get(key, base_before.get(name))
        if before is not None and before.shape == param.shape:
            assert _same_bits(before, param.detach()), name
    for name, buf in buffers_before.items():
        if name in dict(model.named_buffers()):
            assert _same_bits(buf, dict(model.named_buffers())[name]), name


def test_saved_adapter_is_a_plain_servable_peft_folder(tiny_model, tmp_path):
    result = train_adapter(tiny_model, _records(), tmp_path / "adapter", _config(qlora=False))
    folder = result.adapter_dir
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 16 and config["lora_alpha"] == 32 and config["lora_dropout"] == 0.05
    assert set(config["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert not config.get("modules_to_save")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(folder))
    assert any("lora_A" in n for n, _ in model.named_parameters())
    assert (folder / "training_log.jsonl").read_text().count("\n") == result.steps


def test_cancellation_stops_cleanly_and_saves_nothing(tiny_model, tmp_path):
    calls = []
    with pytest.raises(TrainingCancelled):
        train_adapter(
            tiny_model,
            _records(),
            tmp_path / "adapter",
            _config(qlora=False, max_steps=50),
            should_stop=lambda: calls.append(1) or len(calls) >= 2,
        )
    assert len(calls) == 2
    assert not any(tmp_path.iterdir())


def test_dpo_pass_on_corrections(tiny_model, tmp_path):
    records = _records(2)
    prefs = [
        {**r, "chosen": r["completion"], "rejected": [{"role": "assistant", "content": "I do not know."}]}
        for r in records
    ]
    prefs = [{k: v for k, v in p.items() if k != "completion"} for p in prefs]
    result = train_adapter(
        tiny_model,
        records,
        tmp_path / "adapter",
        _config(qlora=False, dpo=True, max_steps=2),
        preferences=prefs,
    )
    assert result.dpo_loss_log and result.dpo_loss_log[0]["phase"] == "dpo"


def test_rank_above_sixteen_is_refused_unless_asked():
    with pytest.raises(ValueError, match="vLLM"):
        AdapterOptions(r=32)
    assert AdapterOptions(r=32, allow_high_rank=True).r == 32
