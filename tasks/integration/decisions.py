"""The integration agent's decisions: why it resolved each conflict (or changed a line) as it did.

The agent writes them to ``$WC_DECISIONS_FILE`` in either of two formats.

JSON, a list (or ``{"decisions": [...]}``) of objects with ``file`` and ``reason`` and, optionally,
``hunk`` (1-based, counted in the file as the conflict left it)::

    [{"file": "app/registry.py", "hunk": 1, "reason": "kept both entries; ui's renamed to avoid a clash"}]

Markdown, one heading per file, the reason below it (a trailing ``(hunk N)`` is optional)::

    ## app/registry.py (hunk 1)

    Kept both entries; ui's renamed to avoid a clash.

A file named here with a reason excuses lines the survival check finds missing in it: the agent
said what it dropped and why. A person who drops a line on purpose writes the same, by hand, in
``<workspace>/.runs/integration/decisions/person.md``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from markdown_it import MarkdownIt
from pydantic import BaseModel

_HUNK = re.compile(r"\s*\(hunk\s+(\d+)\)\s*$", re.I)


class AgentDecision(BaseModel):
    file: str
    reason: str
    hunk: int | None = None
    source: str = ""


def _from_json(data: object, source: str) -> list[AgentDecision]:
    items = data.get("decisions", []) if isinstance(data, dict) else data
    found: list[AgentDecision] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and str(item.get("file", "")).strip() and str(item.get("reason", "")).strip():
            hunk = item.get("hunk")
            found.append(AgentDecision(file=str(item["file"]).strip(), reason=str(item["reason"]).strip(),
                                       hunk=hunk if isinstance(hunk, int) else None, source=source))
    return found


def _from_markdown(text: str, source: str) -> list[AgentDecision]:
    found: list[AgentDecision] = []
    heading: str | None = None
    body: list[str] = []

    def close() -> None:
        if heading and " ".join(body).strip():
            match = _HUNK.search(heading)
            path = _HUNK.sub("", heading).strip().strip("`").strip()
            found.append(AgentDecision(file=path, reason=" ".join(body).strip(),
                                       hunk=int(match.group(1)) if match else None, source=source))

    tokens = MarkdownIt().parse(text)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            close()
            heading, body = tokens[i + 1].content, []
        elif tok.type == "inline" and heading is not None and tokens[i - 1].type != "heading_open":
            body.append(tok.content)
    close()
    return found


def parse_decisions(text: str, source: str = "") -> list[AgentDecision]:
    """Decisions from JSON or markdown; anything unreadable yields none (and excuses nothing)."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return _from_json(json.loads(stripped), source)
        except json.JSONDecodeError:
            return []
    return _from_markdown(text, source)


def load_decisions(folder: Path) -> list[AgentDecision]:
    """Every decision written in ``folder`` (one file per agent call, plus a person's); a call
    whose result was dropped had its file renamed ``*.discarded``, which is not read."""
    found: list[AgentDecision] = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.is_file() and path.suffix in (".md", ".json", ".txt"):
            found += parse_decisions(path.read_text(errors="replace"), source=path.name)
    return found
