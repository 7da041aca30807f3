"""The OpenAI-compatible backend across model-server restarts and registry changes, against the
stand-in (which forgets its runtime adapters on `restart()`, as vLLM does), and its prompt
measurement with the base model's tokenizer."""

from __future__ import annotations

from sqlmodel import select

from bot import messages as text
from bot.llm import CHARS_PER_TOKEN, OpenAILLM
from storage.db import session_scope
from storage.models import Adapter
from tests.bot.test_llm import MESSAGES, activate, openai_llm


def paths(standin, path):
    return [r.get("body") for r in standin.requests if r["path"] == path]


def switch(engine, track, version):
    """Make `track/v<version>` the active one (adding it if new), retiring the one in service."""
    with session_scope(engine) as session:  # one active version per track: retire first
        for row in session.exec(select(Adapter).where(Adapter.track == track, Adapter.status == "active")):
            row.status = "retired"
            session.add(row)
    with session_scope(engine) as session:
        row = session.exec(select(Adapter).where(Adapter.track == track, Adapter.version == version)).first()
        row = row or Adapter(
            track=track,
            version=version,
            name=f"{track}/v{version}",
            base_model="base-model",
            path=f"/srv/adapters/{track}/v{version}",
        )
        row.status = "active"
        session.add(row)


def test_a_restarted_server_gets_the_active_adapter_back_and_the_answer_is_retried(openai_standin, engine):
    activate(engine, "support", 2, "/srv/adapters/support/v2")
    llm = openai_llm(openai_standin, engine)
    assert llm.generate(MESSAGES, track="support").adapter == "support/v2"
    openai_standin.restart()
    openai_standin.requests.clear()

    completion = llm.generate(MESSAGES, track="support")
    assert completion.error is None and completion.notice is None
    assert completion.adapter == "support/v2" and completion.text.endswith("[model=support/v2]")
    # The failed request, the model list, the reload, the retry.
    assert [r["path"] for r in openai_standin.requests] == [
        "/v1/chat/completions",
        "/v1/models",
        "/v1/load_lora_adapter",
        "/v1/chat/completions",
    ]
    assert paths(openai_standin, "/v1/load_lora_adapter") == [
        {"lora_name": "support/v2", "lora_path": "/srv/adapters/support/v2"}
    ]


def test_a_stream_after_a_restart_is_retried_with_the_reloaded_adapter(openai_standin, engine):
    activate(engine, "support", 1)
    llm = openai_llm(openai_standin, engine)
    assert llm.stream(MESSAGES, track="support").result().adapter == "support/v1"
    openai_standin.restart()
    stream = llm.stream(MESSAGES, track="support")
    assert "".join(stream) == "Hello from the stand-in. [model=support/v1]"
    assert stream.completion.error is None and stream.completion.adapter == "support/v1"
    assert len(paths(openai_standin, "/v1/load_lora_adapter")) == 2


def test_an_adapter_the_restarted_server_cannot_load_falls_back_to_the_base_model_with_a_notice(
    openai_standin, engine
):
    activate(engine, "support", 1)
    llm = openai_llm(openai_standin, engine)
    assert llm.generate(MESSAGES, track="support").adapter == "support/v1"
    openai_standin.restart()
    openai_standin.can_load_lora = False
    notice = text.ADAPTER_NOT_SERVED.format(adapter="support/v1")
    for completion in (
        llm.generate(MESSAGES, track="support"),
        llm.stream(MESSAGES, track="support").result(),
    ):
        assert completion.error is None and completion.adapter is None
        assert completion.text.endswith("[model=base-model]") and completion.notice == notice
    # Once the server can load it again, the adapter is back (the registry is read again).
    openai_standin.can_load_lora = True
    completion = llm.generate(MESSAGES, track="support")
    assert completion.adapter == "support/v1" and completion.notice is None


def test_the_notice_reaches_the_answer(openai_standin, engine):
    from bot.assistant import Assistant
    from plugins.manager import make_manager

    openai_standin.can_load_lora = False
    activate(engine, "default", 1)
    assistant = Assistant(engine, make_manager([], entrypoints=False), openai_llm(openai_standin, engine))
    answer = assistant.answer("Hi?", user="U1", mode="prompt")
    assert text.ADAPTER_NOT_SERVED.format(adapter="default/v1") in answer.notices


def test_retired_versions_are_unloaded_and_a_rollback_loads_its_version_again(openai_standin, engine):
    activate(engine, "support", 1, "/srv/adapters/support/v1")
    llm = openai_llm(openai_standin, engine)
    assert llm.generate(MESSAGES, track="support").adapter == "support/v1"
    switch(engine, "support", 2)
    assert llm.generate(MESSAGES, track="support").adapter == "support/v2"
    assert paths(openai_standin, "/v1/unload_lora_adapter") == [{"lora_name": "support/v1"}]
    assert openai_standin.models == {"base-model", "support/v2"}
    switch(engine, "support", 1)  # rollback
    assert llm.generate(MESSAGES, track="support").adapter == "support/v1"
    assert openai_standin.models == {"base-model", "support/v1"}


def test_a_replica_behind_on_the_registry_catches_up_when_its_adapter_was_unloaded(openai_standin, engine):
    activate(engine, "support", 1)
    ahead = openai_llm(openai_standin, engine)
    behind = OpenAILLM(openai_standin.url, model="base-model", engine=engine, refresh_seconds=3600)
    assert behind.generate(MESSAGES, track="support").adapter == "support/v1"
    switch(engine, "support", 2)
    assert ahead.generate(MESSAGES, track="support").adapter == "support/v2"  # and unloads v1
    completion = behind.generate(MESSAGES, track="support")
    assert completion.adapter == "support/v2" and completion.error is None


# --- measuring prompts with the base model's tokenizer ---------------------------------------------


def test_prompts_are_measured_with_the_base_models_tokenizer_loaded_on_first_use(
    openai_standin, tiny_model_dir
):
    from transformers import AutoTokenizer

    llm = openai_llm(openai_standin, tokenizer=str(tiny_model_dir), max_prompt_tokens=60)
    assert llm._tokenizer_state == (False, None)  # nothing loaded until a prompt is measured
    long = [MESSAGES[0], {"role": "user", "content": "holidays " * 200 + "FINAL QUESTION?"}]
    completion = llm.generate(long)
    assert completion.truncated and completion.error is None
    reference = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    rendered = reference.apply_chat_template(completion.messages, tokenize=False, add_generation_prompt=True)
    assert len(reference(rendered, add_special_tokens=False)["input_ids"]) <= 60
    assert llm._count(completion.messages) == len(reference(rendered, add_special_tokens=False)["input_ids"])


def test_the_bundled_models_tokenizer_counts_unlike_characters_over_four(openai_standin):
    llm = openai_llm(openai_standin, tokenizer="smollm2-135m-instruct")
    tokenizer = llm.tokenizer()
    assert tokenizer is not None and tokenizer.chat_template
    french = [{"role": "user", "content": "Combien de congés payés reste-t-il à l'équipe d'exploitation ?"}]
    assert llm._count(french) != OpenAILLM._estimate(french)
    assert llm._count(french) > len(tokenizer(french[0]["content"], add_special_tokens=False)["input_ids"])


def test_without_a_loadable_tokenizer_prompts_are_estimated(openai_standin, tmp_path):
    llm = openai_llm(openai_standin, tokenizer=str(tmp_path / "no-such-model"))
    assert llm._count(MESSAGES) == OpenAILLM._estimate(MESSAGES)
    assert llm.tokenizer() is None and CHARS_PER_TOKEN == 4
