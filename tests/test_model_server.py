"""The scripted model server on its own (stdlib client): each API's reply parses the way its CLI
reads it, and the failures a test asks for arrive as asked. The real CLIs use it in
``tests/test_real_agents.py``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.model_server import Fail, ModelServer, Say, Tool, Turn


def post(url: str, body: dict[str, Any], key: str = "sk-t") -> tuple[int, str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "x-api-key": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - localhost only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def events(text: str) -> list[Any]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]


def test_each_api_answers_in_its_own_shape_and_the_script_sees_the_conversation() -> None:
    seen: list[Turn] = []

    def script(turn: Turn) -> Say | Tool:
        seen.append(turn)
        return Tool("Write", {"file_path": "/w/a.py", "content": "A = 1\n"}) if turn.main else Say("title")

    with ModelServer(script) as server:
        status, text = post(f"{server.url}/v1/messages", {
            "model": "m", "stream": True, "tools": [{"name": "Write"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "# Work cluster `api`"}]},
                         {"role": "user", "content": [{"type": "tool_result", "content": "ok"}]}]})
        assert status == 200
        anthropic = events(text)
        assert [e["type"] for e in anthropic] == ["message_start", "content_block_start", "content_block_delta",
                                                  "content_block_stop", "message_delta", "message_stop"]
        assert json.loads(anthropic[2]["delta"]["partial_json"]) == {"file_path": "/w/a.py", "content": "A = 1\n"}
        assert anthropic[4]["delta"]["stop_reason"] == "tool_use"
        assert seen[-1].prompt == "# Work cluster `api`" and seen[-1].results == ["ok"] and seen[-1].auth == "sk-t"

        status, text = post(f"{server.url}/v1/responses", {"model": "m", "tools": [{"name": "exec_command"}],
                                                           "input": [{"role": "user", "content": "go"}]})
        done = events(text)[-1]
        assert done["type"] == "response.completed" and done["response"]["output"][0]["type"] == "function_call"

        status, text = post(f"{server.url}/v1/chat/completions", {"model": "m", "stream": False,
                                                                  "messages": [{"role": "user", "content": "hi"}]})
        assert json.loads(text)["choices"][0]["message"]["content"] == "title"  # no edit format: a side request


@pytest.mark.parametrize("fail", [Fail(401, "bad key"), Fail(500, "overloaded"), Fail(malformed=True)])
def test_failures_arrive_as_the_script_asks(fail: Fail) -> None:
    with ModelServer(lambda turn: fail) as server:
        status, text = post(f"{server.url}/v1/messages", {"model": "m", "messages": []})
    if fail.malformed:
        assert status == 200
        with pytest.raises(ValueError):
            json.loads(text)
    else:
        assert status == fail.status and json.loads(text)["error"]["message"] == fail.message
