"""The clients of the README's "Use it with the SDKs, LangChain and the llm CLI", each with the
settings the README gives, against the relay on the provider emulator: each completes a request,
gets the emulator's answer, and the account is charged what its usage records say.

Already covered elsewhere (and not repeated here): the openai SDK's chat and streaming
(test_chat.py), Responses (test_responses.py, test_responses_store.py), embeddings
(test_embeddings.py), models.list / models.retrieve in both SDKs (test_models_catalog.py), the
anthropic SDK's messages and streams (test_messages.py, test_messages_stream.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.clients_support import (balance, charged_as_recorded, emulator_answer, run_llm,
                                        write_llm_keys)

GPT, CLAUDE = "gpt-4o-mini", "claude-haiku-4-5"


# -- the official SDKs: `_request_id` ---------------------------------------------------------------

@pytest.mark.parametrize("model", [GPT, CLAUDE])
def test_openai_sdk_request_id_is_the_usage_records_id(relay, account, openai_client, model) -> None:
    before = balance(relay, account)
    prompt = f"openai sdk to {model}"
    reply = openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    assert reply.choices[0].message.content == emulator_answer(prompt)
    [record] = charged_as_recorded(relay, account, before)
    assert reply._request_id == record.id  # x-request-id: the relay's id, quoted in GET /v1/usage


@pytest.mark.parametrize("model, stream", [(CLAUDE, False), (CLAUDE, True), (GPT, False)],
                         ids=["claude", "claude_stream", "gpt"])
def test_anthropic_sdk_request_id(relay, account, anthropic_client, model, stream) -> None:
    before = balance(relay, account)
    prompt = f"anthropic sdk to {model}"
    messages = [{"role": "user", "content": prompt}]
    if stream:
        with anthropic_client.messages.stream(model=model, max_tokens=64, messages=messages) as events:
            text, request_id = events.get_final_text(), events.request_id
    else:
        message = anthropic_client.messages.create(model=model, max_tokens=64, messages=messages)
        text, request_id = message.content[0].text, message._request_id
    assert text == emulator_answer(prompt)
    [record] = charged_as_recorded(relay, account, before)
    assert request_id  # request-id: Anthropic's own for a Claude answer passed on, else the relay's
    if model == GPT:
        assert request_id == record.id


# -- LangChain --------------------------------------------------------------------------------------

@pytest.mark.parametrize("use_responses_api", [False, True], ids=["chat_completions", "responses"])
@pytest.mark.parametrize("model", [GPT, CLAUDE])
def test_langchain_chat_openai(relay, account, model, use_responses_api) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=model, base_url=relay.url + "/v1", api_key=account.key,
                      use_responses_api=use_responses_api, max_retries=0, timeout=30)
    before = balance(relay, account)
    prompt = f"langchain {model} {'responses' if use_responses_api else 'chat'}"
    answer = chat.invoke(prompt)
    assert answer.text == emulator_answer(prompt)
    [record] = charged_as_recorded(relay, account, before)
    assert record.route == ("responses" if use_responses_api else "chat")
    assert answer.usage_metadata["output_tokens"] == record.usage["output_tokens"]


@pytest.mark.parametrize("use_responses_api", [False, True], ids=["chat_completions", "responses"])
def test_langchain_chat_openai_stream(relay, account, use_responses_api) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=GPT, base_url=relay.url + "/v1", api_key=account.key, stream_usage=True,
                      use_responses_api=use_responses_api, max_retries=0, timeout=30)
    before = balance(relay, account)
    prompt = "langchain stream"
    chunks = list(chat.stream(prompt))
    assert "".join(chunk.text for chunk in chunks) == emulator_answer(prompt)
    [record] = charged_as_recorded(relay, account, before)
    usage = sum(chunk.usage_metadata["output_tokens"] for chunk in chunks if chunk.usage_metadata)
    assert usage == record.usage["output_tokens"]


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_langchain_chat_anthropic(relay, account, model, stream) -> None:
    from langchain_anthropic import ChatAnthropic

    chat = ChatAnthropic(model=model, base_url=relay.url, api_key=account.key, max_tokens=64,
                         max_retries=0, timeout=30)
    before = balance(relay, account)
    prompt = f"langchain anthropic {model}"
    if stream:
        text = "".join(chunk.text for chunk in chat.stream(prompt))
    else:
        text = chat.invoke(prompt).text
    assert text == emulator_answer(prompt)
    charged_as_recorded(relay, account, before)


# -- the llm CLI ------------------------------------------------------------------------------------

def test_llm_cli_extra_openai_models(relay, account, tmp_path: Path) -> None:
    """Two relay models in extra-openai-models.yaml, one on chat completions (streamed, llm's
    default, with include_usage), one on the Responses API; the key under the name `relay`.
    (The llm-anthropic plugin is not usable with the anthropic SDK this project pins: its 0.30
    requires anthropic<2, and 0.26 passes `temperature`, which anthropic 2.x no longer accepts.)"""
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: relay-gpt\n"
        f"  model_name: {GPT}\n"
        f"  api_base: {relay.url}/v1\n"
        f"  api_key_name: relay\n"
        f"- model_id: relay-claude\n"
        f"  model_name: {CLAUDE}\n"
        f"  api_base: {relay.url}/v1\n"
        f"  api_key_name: relay\n"
        f"  responses: true\n"
    )
    write_llm_keys(tmp_path, relay=account.key)  # as `llm keys set relay --value sk-rr-…` does
    before = balance(relay, account)
    done = run_llm(tmp_path, "-m", "relay-gpt", "llm to gpt")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == emulator_answer("llm to gpt")
    done = run_llm(tmp_path, "-m", "relay-claude", "--no-stream", "llm to claude")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == emulator_answer("llm to claude")
    records = charged_as_recorded(relay, account, before, count=2)
    assert [(r.route, r.model) for r in records] == [("chat", GPT), ("responses", CLAUDE)]

