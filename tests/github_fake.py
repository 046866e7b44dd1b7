"""A tiny GitHub REST API on loopback, enough for pull requests: list, create, update, label.

It keeps the pull requests it holds and every request it saw (method, path, query, headers,
JSON body), so a test can say exactly what reached "GitHub".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeGitHub:
    def __init__(self) -> None:
        self.pulls: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.fail_with: tuple[int, str] | None = None
        self.url = ""

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if self.fail_with:
            return self.fail_with[0], {"message": self.fail_with[1]}
        parts = path.strip("/").split("/")  # repos/{o}/{r}/pulls[/{n}] or repos/{o}/{r}/issues/{n}/labels
        repo = "/".join(parts[1:3])
        if parts[3:] == ["pulls"] and method == "GET":
            owner, head = query["head"][0].split(":", 1)
            return 200, [p for p in self.pulls if p["repo"] == repo and p["head"]["ref"] == head
                         and owner == repo.split("/")[0] and p["state"] == query.get("state", ["open"])[0]]
        if parts[3:] == ["pulls"] and method == "POST":
            pr = {"number": len(self.pulls) + 1, "repo": repo, "state": "open", "title": body["title"],
                  "body": body["body"], "draft": body.get("draft", False), "head": {"ref": body["head"]},
                  "base": {"ref": body["base"]}, "labels": []}
            pr["html_url"] = f"https://github.example/{repo}/pull/{pr['number']}"
            self.pulls.append(pr)
            return 201, pr
        if parts[3] == "pulls" and method == "PATCH":
            pr = next(p for p in self.pulls if p["number"] == int(parts[4]))
            pr.update({"title": body["title"], "body": body["body"], "base": {"ref": body["base"]}})
            return 200, pr
        if parts[3] == "issues" and parts[5:] == ["labels"] and method == "POST":
            pr = next(p for p in self.pulls if p["number"] == int(parts[4]))
            pr["labels"] = sorted(set(pr["labels"]) | set(body["labels"]))
            return 200, [{"name": n} for n in pr["labels"]]
        return 404, {"message": "Not Found"}


@contextmanager
def fake_github() -> Iterator[FakeGitHub]:
    """The fake API served on a free loopback port for the body of the ``with``."""
    fake = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            query, path = parse_qs(url.query), url.path.removeprefix("/api/v3")  # GitHub Enterprise's prefix
            fake.requests.append({"method": self.command, "path": path, "query": query,
                                  "headers": dict(self.headers), "body": body})
            status, answer = fake.handle(self.command, path, query, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, *args: Any) -> None:  # quiet: pytest shows what the test asserts
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/api/v3"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
