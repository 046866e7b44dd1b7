"""A scripted model server for the real agent CLIs: the three wire formats they speak, on localhost.

- Anthropic Messages (``POST /v1/messages``, SSE or JSON): Claude Code, via ``ANTHROPIC_BASE_URL``.
- OpenAI Responses (``POST /v1/responses``, SSE): Codex, via a model provider whose ``base_url``
  points here and whose ``wire_api`` is ``"responses"``.
- OpenAI Chat Completions (``POST /v1/chat/completions``, SSE or JSON): aider (litellm), via
  ``OPENAI_API_BASE``.

A test gives a *script*: a function from the request (:class:`Turn`) to the model's answer, one
of :class:`Say` (text), :class:`Tool` (one tool call in the CLI's own tool vocabulary) or
:class:`Fail` (an HTTP error or a malformed body). The script keys its answers on the prompt's
content (which cluster, which role) and on how far the conversation has got (``turn.results``:
the tool results the CLI has sent back so far), so one script serves every agent of a run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USAGE_IN, USAGE_OUT = 1200, 80  # tokens reported per answer; the CLIs price them


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Tool:
    """One tool call: ``name`` and ``args`` as the CLI defines its tool (Claude ``Write``; Codex
    ``shell``/``apply_patch``)."""

    name: str
    args: dict[str, Any] | str


@dataclass(frozen=True)
class Fail:
    status: int = 500
    message: str = "scripted failure"
    malformed: bool = False  # 200 with a body no client can parse


Answer = Say | Tool | Fail


@dataclass
class Turn:
    """One request as the script sees it."""

    api: str  # anthropic | responses | chat
    text: str  # every text part of the conversation, system prompt included, joined
    prompt: str  # the first user message: names the conversation
    results: list[str]  # the tool results sent back so far, oldest first
    tools: list[str]  # names of the tools the CLI offered
    auth: str  # the credential the CLI sent (Authorization or x-api-key)
    body: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def main(self) -> bool:
        """The agent's own loop (it offers tools), not a side request such as a title or a
        commit message."""
        return bool(self.tools)


Script = Callable[[Turn], Answer]


def _texts(value: Any) -> Iterator[str]:
    """Every string under ``text``/``content``/``output``/``input`` keys, in order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key in ("text", "content", "output", "instructions", "system"):
            if key in value:
                yield from _texts(value[key])


def _turn(api: str, body: dict[str, Any], auth: str) -> Turn:
    results: list[str] = []
    if api == "anthropic":
        for msg in body.get("messages", []):
            for part in msg.get("content", []) if isinstance(msg.get("content"), list) else []:
                if part.get("type") == "tool_result":
                    results.append("\n".join(_texts(part.get("content", ""))))
        text = "\n".join([*_texts(body.get("system", "")), *_texts(body.get("messages", []))])
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        prompt = "\n".join(_texts(users[0].get("content", ""))) if users else ""
        tools = [t.get("name", "") for t in body.get("tools", [])]
    elif api == "responses":
        items = body.get("input", [])
        results = ["\n".join(_texts(i.get("output", ""))) for i in items
                   if isinstance(i, dict) and i.get("type") in ("function_call_output", "custom_tool_call_output")]
        text = "\n".join([*_texts(body.get("instructions", "")), *_texts(items)])
        users = [i for i in items if isinstance(i, dict) and i.get("role") == "user"]
        prompt = "\n".join(_texts(users[-1].get("content", ""))) if users else ""
        tools = [t.get("name", t.get("type", "")) for t in body.get("tools", [])]
    else:
        messages = body.get("messages", [])
        results = [m.get("content", "") for m in messages if m.get("role") == "tool"]
        text = "\n".join(_texts(messages))
        users = [m for m in messages if m.get("role") == "user"]
        prompt = "\n".join(_texts(users[-1].get("content", ""))) if users else ""
        # aider offers no tools: its main loop is the one whose system prompt teaches its edit format.
        tools = ["edit-format"] if "SEARCH/REPLACE" in text or "*SEARCH/REPLACE block*" in text else []
    return Turn(api=api, text=text, prompt=prompt, results=results, tools=tools, auth=auth, body=body)


def _sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = []
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {payload}\n\n")
    return "".join(out).encode()


def anthropic_reply(answer: Say | Tool, model: str, n: int, stream: bool) -> tuple[str, bytes]:
    if isinstance(answer, Say):
        block: dict[str, Any] = {"type": "text", "text": answer.text}
        stop = "end_turn"
    else:
        block = {"type": "tool_use", "id": f"toolu_{n:04d}", "name": answer.name, "input": answer.args}
        stop = "tool_use"
    usage = {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0}
    message = {"id": f"msg_{n:04d}", "type": "message", "role": "assistant", "model": model,
               "content": [block], "stop_reason": stop, "stop_sequence": None, "usage": usage}
    if not stream:
        return "application/json", json.dumps(message).encode()
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    if isinstance(answer, Say):
        opening: dict[str, Any] = {"type": "text", "text": ""}
        delta: dict[str, Any] = {"type": "text_delta", "text": answer.text}
    else:
        opening = {**block, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(answer.args)}
    return "text/event-stream", _sse([
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": opening}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                           "usage": {"output_tokens": USAGE_OUT}}),
        ("message_stop", {"type": "message_stop"}),
    ])


def responses_reply(answer: Say | Tool, n: int) -> tuple[str, bytes]:
    if isinstance(answer, Say):
        item: dict[str, Any] = {"type": "message", "role": "assistant", "id": f"msg_{n}", "status": "completed",
                                "content": [{"type": "output_text", "text": answer.text, "annotations": []}]}
    elif isinstance(answer.args, str):  # a freeform tool (Codex's apply_patch takes the patch as text)
        item = {"type": "custom_tool_call", "id": f"ctc_{n}", "call_id": f"call_{n}", "name": answer.name,
                "input": answer.args, "status": "completed"}
    else:
        item = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": answer.name,
                "arguments": json.dumps(answer.args), "status": "completed"}
    usage = {"input_tokens": USAGE_IN, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": USAGE_OUT,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": USAGE_IN + USAGE_OUT}
    response = {"id": f"resp_{n}", "object": "response", "status": "completed", "output": [item], "usage": usage}
    return "text/event-stream", _sse([
        ("response.created", {"type": "response.created", "response": {**response, "status": "in_progress",
                                                                       "output": []}}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
        ("response.completed", {"type": "response.completed", "response": response}),
    ])


def chat_reply(answer: Say | Tool, model: str, n: int, stream: bool) -> tuple[str, bytes]:
    text = answer.text if isinstance(answer, Say) else json.dumps(answer.args)
    usage = {"prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT, "total_tokens": USAGE_IN + USAGE_OUT}
    base = {"id": f"chatcmpl-{n}", "created": 1_700_000_000, "model": model}
    if not stream:
        return "application/json", json.dumps({**base, "object": "chat.completion", "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}).encode()
    chunk = {**base, "object": "chat.completion.chunk"}
    return "text/event-stream", _sse([
        (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                                      "finish_reason": None}]}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}),
        (None, "[DONE]"),
    ])


class ModelServer:
    """``with ModelServer(script) as server:`` serves on ``server.url`` until the block ends.

    ``server.turns`` keeps every request the CLIs made, in order, for the test to assert on.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.turns: list[Turn] = []
        self.unknown: list[str] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, api: str, body: dict[str, Any], auth: str) -> tuple[int, str, bytes]:
        turn = _turn(api, body, auth)
        with self._lock:
            self.turns.append(turn)
            n = len(self.turns)
        answer = self.script(turn)
        if isinstance(answer, Fail):
            if answer.malformed:
                return 200, "text/event-stream" if body.get("stream") else "application/json", b"{not json"
            error = {"type": "error", "error": {"type": "api_error" if answer.status >= 500 else
                                                "authentication_error", "message": answer.message,
                                                "code": str(answer.status)}}
            return answer.status, "application/json", json.dumps(error).encode()
        model = str(body.get("model", "scripted"))
        if api == "anthropic":
            ctype, data = anthropic_reply(answer, model, n, bool(body.get("stream")))
        elif api == "responses":
            ctype, data = responses_reply(answer, n)
        else:
            ctype, data = chat_reply(answer, model, n, bool(body.get("stream")))
        return 200, ctype, data

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass  # the CLIs' own logs say enough; a test asserts on server.turns

            def _send(self, status: int, ctype: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("request-id", "req_scripted")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                # Model lists and the like: an empty answer of the usual shape.
                server.unknown.append(f"GET {self.path}")
                self._send(200, "application/json", b'{"data": [], "models": [], "object": "list"}')

            def do_HEAD(self) -> None:  # noqa: N802
                self._send(200, "application/json", b"")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                auth = self.headers.get("x-api-key") or self.headers.get("Authorization", "")
                path = self.path.split("?")[0].rstrip("/")
                api = ("anthropic" if path.endswith("/messages") else "responses" if path.endswith("/responses")
                       else "chat" if path.endswith("/chat/completions") else "")
                if path.endswith("/count_tokens"):
                    self._send(200, "application/json", b'{"input_tokens": 100}')
                    return
                if not api:
                    server.unknown.append(f"POST {self.path}")
                    self._send(200, "application/json", b"{}")
                    return
                self._send(*server.answer(api, body, auth))

        return Handler
