"""The integration agent's decisions: why it resolved each conflict (or changed a line) as it did.

The agent writes them to ``$WC_DECISIONS_FILE`` in either of two formats.

JSON, a list (or ``{"decisions": [...]}``) of objects with ``file`` and ``reason`` and, optionally,
``hunk`` (1-based, counted in the file as the conflict left it)::

    [{"file": "app/registry.py", "hunk": 1, "reason": "kept both entries; ui's renamed to avoid a clash"}]

Markdown, one heading per file, the reason below it (a trailing ``(hunk N)`` is optional)::

    ## app/registry.py (hunk 1)

    Kept both entries; ui's renamed to avoid a clash.

Real models also write free-form markdown, so a bullet or a paragraph that names a file (a path
with a folder or an extension, in backticks or not) counts too, the whole text as the reason::

    - app/config.py: kept both sides, api's timeout first.

``form`` records which of these the reason was taken from (``json``, ``heading``, ``bullet``,
``paragraph``), and the report shows it. A file named here with a reason explains what the change
accounting finds in it: the agent said what it changed and why. A person who drops a line on
purpose writes the same, by hand, in ``<workspace>/.runs/integration/decisions/person.md``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from markdown_it import MarkdownIt
from pydantic import BaseModel

_HUNK = re.compile(r"\s*\(hunk\s+(\d+)\)\s*$", re.I)


# A path as agents write it: with a folder or a file extension, not a URL, not a bare word.
_PATH = re.compile(r"(?<![\w/:.-])`?((?:[\w.-]+/)*[\w-][\w.-]*\.[A-Za-z][A-Za-z0-9]{0,7}"
                   r"|(?:[\w-][\w.-]*/)+[\w.-]*\w)`?(?![\w/])")


class AgentDecision(BaseModel):
    file: str
    reason: str
    hunk: int | None = None
    source: str = ""
    form: str = "heading"


def _from_json(data: object, source: str) -> list[AgentDecision]:
    items = data.get("decisions", []) if isinstance(data, dict) else data
    found: list[AgentDecision] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and str(item.get("file", "")).strip() and str(item.get("reason", "")).strip():
            hunk = item.get("hunk")
            found.append(AgentDecision(file=str(item["file"]).strip(), reason=str(item["reason"]).strip(),
                                       hunk=hunk if isinstance(hunk, int) else None, source=source, form="json"))
    return found


def named_paths(text: str) -> list[str]:
    """The file paths ``text`` names, in order, each once.

    >>> named_paths("- `app/config.py`: kept both; see README.md, not https://x.org/a.py")
    ['app/config.py', 'README.md']
    """
    found: list[str] = []
    for match in _PATH.finditer(text):
        path = match.group(1)
        stem, _, ext = path.rpartition(".")
        if path not in found and ("/" in path or (len(stem) > 1 and len(ext) > 1)):  # not "e.g." or "3.12"
            found.append(path)
    return found


def _from_markdown(text: str, source: str) -> list[AgentDecision]:
    """``## path`` sections; elsewhere, every bullet or paragraph that names a file."""
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
            title = tokens[i + 1].content
            # A heading that is not a path ("## Decisions") opens no section: its text is read free-form.
            heading, body = (title, []) if _HUNK.sub("", title).strip().strip("`") in named_paths(title) else (None, [])
        elif tok.type == "inline" and tokens[i - 1].type != "heading_open":
            if heading is not None:
                body.append(tok.content)
                continue
            in_item = i >= 2 and tokens[i - 2].type == "list_item_open"
            for path in named_paths(tok.content):
                found.append(AgentDecision(file=path, reason=" ".join(tok.content.split()), source=source,
                                           form="bullet" if in_item else "paragraph"))
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
