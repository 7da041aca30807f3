"""Fast single-answer decoding: the adapter merged into a served copy, bfloat16 weights, prompt lookup."""

from __future__ import annotations

import pytest

from finetune.decode import merged_copy, prompt_draft

QUESTIONS = [
    [{"role": "user", "content": "Where do I send expense receipts? Receipts go to the finance portal."}],
    [
        {"role": "system", "content": "Answer from the text."},
        {"role": "user", "content": "Text: holidays are booked in the HR portal.\n\nQuestion: where?"},
    ],
    [{"role": "user", "content": "Comment poser un jour de congé ?"}],
]


def make_adapter(base_dir, folder, seed: int) -> str:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=4,
        lora_alpha=32,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        init_lora_weights=False,
    )
    get_peft_model(model, config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def adapters(tiny_model, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("adapters")
    return {name: make_adapter(tiny_model, folder / name, seed) for name, seed in (("a", 1), ("b", 2))}


@pytest.fixture
def chat(tiny_model, adapters):
    from finetune.model import ChatModel

    model = ChatModel.load(tiny_model)
    model.load_adapter("team", adapters["a"])
    model.prefix_cache = None
    model.decode_weights = "float32"  # exact: compared token for token with generate()
    return model


def _ids(chat, messages):
    return chat.tokenizer(chat.render(messages), add_special_tokens=False, return_tensors="pt")["input_ids"]


def test_the_merged_copy_gives_the_adapters_logits_and_shares_the_rest(chat):
    import torch

    ids = _ids(chat, QUESTIONS[0])
    with chat.using("team") as model, torch.inference_mode():
        attached = model(input_ids=ids).logits
        base = model.get_base_model()
        served = merged_copy(base, "team", "float32")
        merged = served(input_ids=ids).logits
        again = model(input_ids=ids).logits  # building the copy left the loaded model as it was
    with chat.using(None) as model, torch.inference_mode():
        without = model(input_ids=ids).logits
    assert torch.allclose(attached, merged, atol=1e-4)
    assert torch.equal(attached, again)
    assert not torch.allclose(attached, without, atol=1e-3)  # the adapter does change the answer
    # The embeddings are the loaded tensors, not copies; merged projections are the copy's own.
    assert served.get_input_embeddings().weight.data_ptr() == base.get_input_embeddings().weight.data_ptr()
    loaded_q = base.model.layers[0].self_attn.q_proj.base_layer.weight
    assert served.model.layers[0].self_attn.q_proj.weight.data_ptr() != loaded_q.data_ptr()


def test_the_bfloat16_head_picks_the_float32_token(chat):
    import torch

    served = merged_copy(chat.model.get_base_model(), None, "bfloat16")
    head = served.get_output_embeddings()
    full = chat.model.get_base_model().get_output_embeddings().weight
    torch.manual_seed(0)
    hidden = torch.randn(400, full.shape[1])
    with torch.inference_mode():
        picked = head(hidden).argmax(-1)
        exact = (hidden @ full.T).argmax(-1)
    assert torch.equal(picked, exact)
    assert head.low.dtype == torch.bfloat16 and head.full.data_ptr() == full.data_ptr()


def test_our_loop_answers_what_generate_answers(chat):
    """With a float32 served copy: the same tokens as transformers' generate() on the unmerged
    adapter, for every question, with and without the adapter, with and without prompt-lookup drafts,
    whole or streamed."""
    for adapter in (None, "team"):
        for messages in QUESTIONS:
            chat.fast_decode, chat.prompt_lookup = False, 0
            reference = chat.generate(messages, adapter=adapter, max_new_tokens=12)
            for draft in (0, 1, 3):
                chat.fast_decode, chat.prompt_lookup = True, draft
                ours = chat.generate(messages, adapter=adapter, max_new_tokens=12)
                assert (ours.text, ours.completion_tokens) == (reference.text, reference.completion_tokens), (
                    adapter,
                    draft,
                    messages,
                )
            streamed = chat.stream(messages, adapter=adapter, max_new_tokens=12)
            assert "".join(streamed).strip() == reference.text


def test_the_bfloat16_copy_stays_close_to_float32(chat):
    """Its projections round to bfloat16, so a near tie can go the other way: on the random tiny
    model (near-uniform logits) about 95 % of the next-token picks are float32's; docs/benchmarks.md
    counts how often an answer of the bundled model changes."""
    import torch

    base = chat.model.get_base_model()
    torch.manual_seed(0)
    ids = torch.randint(10, base.config.vocab_size, (4, 64))
    with chat.using("team") as model, torch.inference_mode():
        exact = model(input_ids=ids).logits
        rounded = merged_copy(base, "team", "bfloat16")(input_ids=ids).logits
    assert (exact.argmax(-1) == rounded.argmax(-1)).float().mean() >= 0.9
    assert (exact - rounded).abs().mean() < 0.05 * exact.std()


def test_the_served_copy_follows_the_adapter_that_is_loaded(chat, adapters):
    first = chat.generate(QUESTIONS[0], adapter="team", max_new_tokens=10)
    assert chat._served_model is not None
    chat.load_adapter("team", adapters["b"])  # the same name, other weights
    assert chat._served_model is None
    chat.fast_decode = False
    expected = chat.generate(QUESTIONS[0], adapter="team", max_new_tokens=10)
    chat.fast_decode = True
    second = chat.generate(QUESTIONS[0], adapter="team", max_new_tokens=10)
    assert second.text == expected.text != first.text
    chat.remove_adapter("team")
    assert chat._served_model is None


def test_a_generation_config_that_changes_the_pick_is_left_to_generate(chat):
    chat.model.get_base_model().generation_config.repetition_penalty = 1.3
    try:
        assert chat._served(None) is None
        chat.fast_decode = False
        expected = chat.generate(QUESTIONS[0], max_new_tokens=10)
        chat.fast_decode = True
        assert chat.generate(QUESTIONS[0], max_new_tokens=10).text == expected.text
    finally:
        chat.model.get_base_model().generation_config.repetition_penalty = None
    assert chat._served(None) is not None


def test_a_clock_cut_is_reported_on_our_loop(chat):
    chat.stop_loops = False
    cut = chat.generate(QUESTIONS[0], max_new_tokens=400, max_time=0.05)
    assert cut.timed_out and 0 < cut.completion_tokens < 400


def test_prompt_draft_copies_what_followed_the_last_tokens():
    tokens = [5, 6, 7, 8, 9, 1, 6, 7]
    assert prompt_draft(tokens, 2) == [8, 9]  # after "6 7" came "8 9"
    assert prompt_draft([5, 6, 7, 1, 9, 7], 3) == [1, 9, 7]  # no earlier "9 7": after "7" came "1 9 7"
    assert prompt_draft([1, 2, 3], 4) == []
    assert prompt_draft(tokens, 0) == []
