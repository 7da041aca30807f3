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
    assert config["r"] == 16 and config["lora_alpha"] == 32 and config["lora_dropout"] == 0.0
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


def _uneven_records():
    """Prompts of very different lengths, as team pairs with context and short replay pairs are."""
    records = []
    for i, (q, a) in enumerate(questions(3)):
        context = " ".join(["The handbook says the office opens at nine."] * (1 + 3 * (i % 4)))
        records.append(
            {"prompt": prompt_messages(q, context), "completion": [{"role": "assistant", "content": a}]}
        )
    return records


def test_padding_free_batches_train_as_padded_ones_do(tiny_model, tmp_path):
    runs = {}
    for padding_free in (False, True):
        result = train_adapter(
            tiny_model,
            _uneven_records(),
            tmp_path / f"adapter-{padding_free}",
            _config(max_length=512, padding_free=padding_free, replay_ratio=0),
        )
        assert result.padding_free is padding_free
        runs[padding_free] = [e["loss"] for e in result.loss_log]
    assert len(runs[True]) == 3
    # One row per batch with restarting positions: the same sequences, the same loss (that they do not
    # attend to each other is checked below); later steps follow weights updated from sums taken in
    # another order, so they agree less closely.
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-5)
    assert runs[True] == pytest.approx(runs[False], rel=5e-3)


def test_a_record_longer_than_max_length_trains_padded_and_truncated(tiny_model, tmp_path):
    records = _uneven_records()
    result = train_adapter(tiny_model, records, tmp_path / "adapter", _config(max_length=64, replay_ratio=0))
    assert result.padding_free is False and result.steps == 3


def test_the_lm_head_scores_only_labelled_positions_with_the_same_loss(tiny_model, monkeypatch):
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    from finetune.train import score_completions_only

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.config.use_cache = False
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    torch.manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (2, 40))
    labels = ids.clone()
    labels[:, :30] = -100  # a prompt, then the completion
    losses = {}
    for compact in (False, True):
        monkeypatch.setattr(trl_utils, "_use_triton", lambda device, on=compact: on)
        with torch.no_grad():
            losses[compact] = model(input_ids=ids, labels=labels, fused_lm_head=True).loss.item()
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)

    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)
    assert score_completions_only() is True
    assert trl_utils._use_triton(torch.device("cpu")) is True
    assert score_completions_only() is True  # a second call does not wrap it again


def test_a_padding_free_row_keeps_its_sequences_apart(tiny_model):
    """The mechanism padding-free training rests on: TRL's collator joins the batch into one row with
    restarting position ids, and the model reads each sequence as if it were alone."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    torch.manual_seed(0)
    sequences = [torch.randint(5, model.config.vocab_size, (n,)).tolist() for n in (12, 30, 7)]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": s} for s in sequences]
    )
    assert batch["input_ids"].shape == (1, 49)
    with torch.no_grad():
        alone = torch.cat([model(input_ids=torch.tensor([s])).logits[0] for s in sequences])
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
        joined = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
    assert torch.allclose(packed, alone, atol=1e-5)
    assert not torch.allclose(joined, alone, atol=1e-5)  # read as one sequence, they would mix


def test_epochs_after_the_first_are_cut_to_the_step_budget():
    config = TrainConfig(epochs=3, batch_size=4, step_budget=48)
    assert config.planned_steps(47) == -1  # 12 steps a pass, 36 in all: every epoch
    assert config.planned_steps(89) == 48  # 23 a pass, 69 in all: cut to the budget
    assert config.planned_steps(400) == 100  # one pass is longer than the budget: one whole pass
    assert TrainConfig(epochs=3, step_budget=0).planned_steps(400) == -1
    assert TrainConfig(epochs=3, step_budget=48, max_steps=5).planned_steps(400) == 5
    accumulated = TrainConfig(epochs=3, batch_size=4, gradient_accumulation_steps=2, step_budget=30)
    assert accumulated.planned_steps(89) == 30  # 11 optimizer steps a pass, 33 in all


def test_a_run_stops_at_the_step_budget(tiny_model, tmp_path):
    records = _records(2)  # 8 records
    config = _config(max_steps=-1, epochs=3, step_budget=4, replay_ratio=0)
    result = train_adapter(tiny_model, records, tmp_path / "adapter", config)
    assert result.steps == 4  # 2 steps a pass, 6 in 3 epochs, cut to 4
