"""LLM backends: the OpenAI-compatible one against a local stand-in (streaming too), the local one
on the tiny model, prompt fitting, and the prefix cache."""

from __future__ import annotations

import socket
import time

import pytest

from bot import messages as text
from bot.llm import LocalLLM, OpenAILLM, fit_prompt, make_llm
from bot.settings import load_settings
from storage.db import session_scope
from storage.models import Adapter

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


def activate(engine, track, version, path="/srv/adapters/x"):
    with session_scope(engine) as session:
        session.add(
            Adapter(
                track=track,
                version=version,
                name=f"{track}/v{version}",
                base_model="base-model",
                path=str(path),
                status="active",
            )
        )


def openai_llm(standin, engine=None, **kwargs):
    return OpenAILLM(standin.url, model="base-model", engine=engine, refresh_seconds=0, **kwargs)


# --- OpenAI-compatible backend ----------------------------------------------------------------------


def test_generate_through_the_standin(openai_standin):
    completion = openai_llm(openai_standin).generate(MESSAGES)
    assert completion.error is None
    assert completion.text == "Hello from the stand-in. [model=base-model]"
    assert (completion.prompt_tokens, completion.completion_tokens) == (11, 5)
    sent = openai_standin.requests[-1]["body"]
    assert sent["messages"] == MESSAGES and sent["temperature"] == 0.0


def test_stream_yields_pieces_then_the_completion(openai_standin):
    stream = openai_llm(openai_standin).stream(MESSAGES)
    pieces = list(stream)
    assert len(pieces) > 3
    assert "".join(pieces) == "Hello from the stand-in. [model=base-model]"
    assert stream.completion.text == "".join(pieces)
    assert stream.completion.error is None
    assert stream.completion.prompt_tokens == 11  # from the final usage chunk
    assert openai_standin.requests[-1]["body"]["stream"] is True


def test_active_adapter_is_the_served_model_and_is_loaded_into_the_server(openai_standin, engine):
    activate(engine, "support", 2, "/srv/adapters/support/v2")
    llm = openai_llm(openai_standin, engine)
    completion = llm.generate(MESSAGES, track="support")
    assert completion.adapter == "support/v2"
    assert completion.text.endswith("[model=support/v2]")
    loads = [r["body"] for r in openai_standin.requests if r["path"] == "/v1/load_lora_adapter"]
    assert loads == [{"lora_name": "support/v2", "lora_path": "/srv/adapters/support/v2"}]
    # Other tracks keep the base model.
    assert llm.generate(MESSAGES, track="default").text.endswith("[model=base-model]")


def test_adapter_the_server_cannot_load_falls_back_to_the_base_model(openai_standin, engine):
    openai_standin.can_load_lora = False
    activate(engine, "support", 1)
    completion = openai_llm(openai_standin, engine).generate(MESSAGES, track="support")
    assert completion.error is None and completion.adapter is None
    assert completion.text.endswith("[model=base-model]")


def test_slow_endpoint_answers_with_an_error_within_the_timeout(openai_standin):
    openai_standin.delay = 3.0
    started = time.perf_counter()
    completion = openai_llm(openai_standin, timeout=0.5).generate(MESSAGES)
    assert time.perf_counter() - started < 2.5
    assert completion.error == text.LLM_TIMEOUT.format(seconds="0.5")
    stream = openai_llm(openai_standin, timeout=0.5).stream(MESSAGES)
    assert list(stream) == []
    assert stream.completion.error == text.LLM_TIMEOUT.format(seconds="0.5")


def test_endpoint_down_answers_with_an_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    completion = OpenAILLM(url, model="m", timeout=2).generate(MESSAGES)
    assert completion.error == text.LLM_UNREACHABLE.format(url=url)
    stream = OpenAILLM(url, model="m", timeout=2).stream(MESSAGES)
    assert list(stream) == [] and stream.completion.error == completion.error


def test_http_error_answers_with_an_error(openai_standin):
    openai_standin.status = 503
    completion = openai_llm(openai_standin).generate(MESSAGES)
    assert completion.error.startswith("the model server refused the request (HTTP 503")


def test_make_llm_picks_the_backend(openai_standin):
    settings = load_settings(
        llm_backend="openai", openai_base_url=openai_standin.url, openai_model="base-model"
    )
    llm = make_llm(settings, None, chat_model=lambda: pytest.fail("the local model must not load"))
    assert isinstance(llm, OpenAILLM) and llm.generate(MESSAGES).error is None


# --- prompt fitting ---------------------------------------------------------------------------------


def count_chars(messages):
    return sum(len(m["content"]) for m in messages)


def test_fit_prompt_drops_examples_then_cuts_the_question_keeping_the_system_prompt():
    system = {"role": "system", "content": "S" * 50}
    shots = [{"role": "user", "content": "q" * 40}, {"role": "assistant", "content": "a" * 40}]
    question = {"role": "user", "content": "BEGIN " + "x" * 300 + " END"}
    fitted, cut = fit_prompt([system, *shots, question], count_chars, 400)
    assert cut and fitted == [system, question]
    fitted, cut = fit_prompt([system, *shots, question], count_chars, 200)
    assert cut and fitted[0] == system and len(fitted) == 2
    assert count_chars(fitted) <= 200
    assert fitted[1]["content"].startswith("BEGIN") and fitted[1]["content"].endswith("END")
    assert "[…]" in fitted[1]["content"]
    assert fit_prompt([system, question], count_chars, 1000) == ([system, question], False)


# --- local backend ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_model(tiny_model_dir):
    from finetune.model import ChatModel

    return ChatModel.load(str(tiny_model_dir))


def test_local_generate_and_stream_agree(chat_model):
    llm = LocalLLM(chat_model, max_new_tokens=6)
    completion = llm.generate(MESSAGES)
    assert completion.error is None and completion.completion_tokens > 0
    stream = llm.stream(MESSAGES)
    assert "".join(stream).strip() == completion.text == stream.completion.text


def test_local_long_question_is_cut_with_the_system_prompt_kept(chat_model):
    llm = LocalLLM(chat_model, max_new_tokens=2, max_prompt_tokens=80)
    long = [MESSAGES[0], {"role": "user", "content": "holidays " * 400 + "FINAL QUESTION?"}]
    completion = llm.generate(long)
    assert completion.truncated and completion.error is None
    assert completion.messages[0] == MESSAGES[0]
    assert completion.messages[1]["content"].endswith("QUESTION?")
    assert completion.prompt_tokens <= 80


def test_local_failure_is_an_error_not_an_exception(chat_model, engine, tmp_path):
    activate(engine, "support", 1, tmp_path / "not-an-adapter")
    llm = LocalLLM(chat_model, engine, max_new_tokens=2, refresh_seconds=0)
    # An adapter that cannot load: the base model answers.
    completion = llm.generate(MESSAGES, track="support")
    assert completion.error is None and completion.adapter is None

    class OutOfMemory(type(chat_model)):
        def generate(self, *args, **kwargs):
            raise RuntimeError("CUDA out of memory")

        def stream(self, *args, **kwargs):
            yield "Partial"
            raise RuntimeError("CUDA out of memory")

    broken = LocalLLM(OutOfMemory(chat_model.model, chat_model.tokenizer, "tiny"), max_new_tokens=2)
    assert broken.generate(MESSAGES).error == "RuntimeError: CUDA out of memory"
    stream = broken.stream(MESSAGES)
    assert list(stream) == ["Partial"]
    assert (
        stream.completion.error == "RuntimeError: CUDA out of memory" and stream.completion.text == "Partial"
    )


# --- prefix cache -----------------------------------------------------------------------------------


def test_prefix_cache_gives_the_same_logits_and_is_reused(chat_model):
    import torch

    from finetune.prefix_cache import PrefixCache, prefix_length

    system = {"role": "system", "content": "The holiday policy says many things. " * 20}
    messages = [system, {"role": "user", "content": "How many days?"}]
    ids = chat_model.tokenizer(chat_model.render(messages), add_special_tokens=False, return_tensors="pt")[
        "input_ids"
    ]
    n = prefix_length(chat_model.tokenizer, messages, ids)
    assert 40 < n < ids.shape[1]
    cache = PrefixCache(min_tokens=8)
    with chat_model.using(None) as model, torch.inference_mode():
        full = model(input_ids=ids).logits[0, -1]
        past = cache.past_for(model, ids, n, (None, None))
        rest = model(input_ids=ids[:, n:], past_key_values=past, use_cache=True).logits[0, -1]
        again = cache.past_for(model, ids, n, (None, None))
    assert torch.allclose(full, rest, atol=1e-4)
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)
    assert again.get_seq_length() == n  # each request gets a fresh copy, untouched by the last one
    # A different system prompt is a different entry; a conversation without one is not cached.
    assert prefix_length(chat_model.tokenizer, messages[1:], ids) == 0


def test_generation_with_the_prefix_cache_matches_without(chat_model):
    system = {"role": "system", "content": "Answer about expenses and holidays. " * 15}
    messages = [system, {"role": "user", "content": "Where are receipts sent?"}]
    saved = chat_model.prefix_cache
    try:
        chat_model.prefix_cache = None
        plain = chat_model.generate(messages, max_new_tokens=8)
        chat_model.prefix_cache = type(saved)(min_tokens=8)
        first = chat_model.generate(messages, max_new_tokens=8)
        second = chat_model.generate(messages, max_new_tokens=8)
        assert chat_model.prefix_cache.stats.hits == 1
    finally:
        chat_model.prefix_cache = saved
    assert plain.text == first.text == second.text


# --- concurrent tracks ----------------------------------------------------------------------------


def make_adapter(base_dir, folder, seed):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(folder)
    return folder


def test_tracks_served_at_once_each_get_their_own_adapter(tiny_model_dir, engine, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from finetune.model import ChatModel

    activate(engine, "alpha", 1, make_adapter(tiny_model_dir, tmp_path / "alpha", seed=1))
    activate(engine, "beta", 1, make_adapter(tiny_model_dir, tmp_path / "beta", seed=2))
    llm = LocalLLM(ChatModel.load(str(tiny_model_dir)), engine, max_new_tokens=8)
    system = {
        "role": "system",
        "content": "You answer questions about the team's holidays and expenses. " * 4,
    }
    messages = [system, {"role": "user", "content": "How do I request holidays?"}]
    tracks = ["alpha", "beta", "default"]
    alone = {track: llm.generate(messages, track=track) for track in tracks}
    assert [alone[t].adapter for t in tracks] == ["alpha/v1", "beta/v1", None]
    assert len({alone[t].text for t in tracks}) == 3, (
        "the adapters must change the output for this test to mean anything"
    )

    def ask(track):
        return track, llm.generate(messages, track=track)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(ask, tracks * 4))
    for track, completion in results:
        assert completion.error is None
        assert (completion.adapter, completion.text) == (alone[track].adapter, alone[track].text), track


def test_local_timeout_stops_generation_and_says_so(chat_model):
    chat_model.stop_loops = False  # the random model loops, which would end its answer before the clock does
    try:
        _timeout_checks(chat_model)
    finally:
        chat_model.stop_loops = True


def _timeout_checks(chat_model):
    slow = LocalLLM(chat_model, max_new_tokens=400, timeout=0.05)
    completion = slow.generate(MESSAGES)
    assert completion.error is None and completion.timed_out
    assert 0 < completion.completion_tokens < 400
    stream = slow.stream(MESSAGES)
    written = "".join(stream)
    assert stream.completion.timed_out and stream.completion.error is None
    assert stream.completion.text == written.strip()
    # A generous limit changes nothing.
    patient = LocalLLM(chat_model, max_new_tokens=4, timeout=600)
    assert not patient.generate(MESSAGES).timed_out
    stream = patient.stream(MESSAGES)
    list(stream)
    assert not stream.completion.timed_out
