"""The seed's markdown spelling of a plan, read into the dict the YAML spelling gives (SPEC 2).

```markdown
# Auth system                      -> name: auth-system (unless front matter sets it)
Build auth system                  -> goal
## Clusters
1. **Backend Cluster** (auth_api/) -> name: backend, paths: [auth_api/]
   - JWT token handling            -> a task
   - Cohesive because: server auth -> cohesion
## Contracts / ## Shared           -> bullets, the paths in code spans
## Integration                     -> Verify: `cmd`, Agent: name, Land: yes|no
```

A cluster's bullets may also say ``Agent: name``, ``Verify: `cmd```, ``Kind: investigation``
and ``Depends on: data, api``, so that every cluster field has a markdown spelling. A bullet
with nested bullets is one task: ``API routes: /login; /register``.

Parsing is done by markdown-it on the document; only a single inline's text is matched by a
regex. The YAML front matter is split off here and read by ``tasks.plan.load``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

from prefect_work_clusters.tasks.errors import PlanError, Problem
from prefect_work_clusters.tasks.plan.bounds import MAX_DEPTH
from prefect_work_clusters.tasks.plan.models import slugify

_KEYED = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*)$", re.DOTALL)
_PAREN = re.compile(r"^\s*\(([^)]*)\)")
_CLUSTER_WORD = re.compile(r"\s*\bcluster\s*$", re.IGNORECASE)
_YES_NO = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}


@dataclass
class MarkdownPlan:
    """A markdown plan read into YAML-shaped ``data``; ``lines`` maps field paths such as
    ``clusters.1.paths`` to 1-based line numbers; ``front_matter`` is its YAML text, if any,
    which starts on line 2 of the file."""

    data: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    front_matter: str | None = None


def split_front_matter(text: str) -> tuple[str | None, str, str | None]:
    """(front matter, body, problem). The body keeps the front matter's lines as blank lines, so
    line numbers in the body are line numbers in the file."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "---":
        return None, text, None
    for end, line in enumerate(lines[1:], start=1):
        if line.rstrip() in ("---", "..."):
            return "".join(lines[1:end]), "\n" * (end + 1) + "".join(lines[end + 1:]), None
    return None, text, "front matter opened with '---' on line 1 is never closed by another '---'"


def _too_deep(tokens: list[Token]) -> int | None:
    """The line of the first token nested past ``MAX_DEPTH`` (block and inline levels added up)."""
    for token in tokens:
        deepest = token.level + max((child.level for child in token.children or []), default=0)
        if deepest > MAX_DEPTH:
            return token.map[0] + 1 if token.map else None
    return None


def _line(node: SyntaxTreeNode) -> int | None:
    return node.map[0] + 1 if node.map else None


def _plain(node: SyntaxTreeNode) -> str:
    """The text a reader sees: code spans without backticks, emphasis without stars."""
    if node.type in ("text", "code_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(_plain(child) for child in node.children)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _inline(item: SyntaxTreeNode) -> SyntaxTreeNode | None:
    """The inline text of a list item's first paragraph."""
    first = item.children[0] if item.children else None
    if first is None or first.type != "paragraph" or not first.children:
        return None
    return first.children[0]


def _codes(inline: SyntaxTreeNode) -> list[str]:
    return [child.content.strip() for child in inline.walk() if child.type == "code_inline"]


def _cluster_name(title: str) -> str:
    return slugify(_CLUSTER_WORD.sub("", title))


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.out = MarkdownPlan()

    def problem(self, where: str, message: str, node: SyntaxTreeNode) -> None:
        self.out.problems.append(Problem(self.file, where, message, _line(node)))

    def note(self, key: str, node: SyntaxTreeNode) -> None:
        line = _line(node)
        if line is not None:
            self.out.lines.setdefault(key, line)

    def add(self, key: str, value: Any, node: SyntaxTreeNode) -> None:
        """Append ``value`` to the list at dotted ``key`` (created on first use) and note its line."""
        *parents, last = key.split(".")
        target: Any = self.out.data
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        items = target.setdefault(last, [])
        self.note(f"{key}.{len(items)}", node)
        items.append(value)

    # -- sections ----------------------------------------------------------------------------

    def paths_section(self, key: str, items: SyntaxTreeNode) -> None:
        for item in items.children:
            inline = _inline(item)
            text = _squash(_plain(inline)) if inline else ""
            for path in (_codes(inline) if inline else []) or ([text] if text else []):
                self.add(key, path, item)

    def clusters(self, items: SyntaxTreeNode) -> None:
        for item in items.children:
            where = f"clusters.{len(self.out.data.setdefault('clusters', []))}"
            inline = _inline(item)
            kids = [c for c in (inline.children if inline else []) if c.type != "text" or c.content.strip()]
            if kids and kids[0].type == "strong":
                title, rest = _plain(kids[0]), "".join(_plain(c) for c in kids[1:])
            else:
                # Read it anyway, so this one problem is not followed by "fewer than 2 clusters".
                self.problem("clusters", "a cluster starts with its name in bold, "
                             "e.g. '**Backend Cluster** (auth_api/)'", item)
                title, paren_open, rest = "".join(_plain(c) for c in kids).partition("(")
                rest = paren_open + rest
            paren = _PAREN.match(rest)
            cluster: dict[str, Any] = {"name": _cluster_name(_squash(title))}
            self.out.data["clusters"].append(cluster)
            for key in (where, f"{where}.name", f"{where}.paths"):
                self.note(key, item)
            cluster["paths"] = []
            for path in (p.strip() for p in paren.group(1).split(",")) if paren else ():
                if path:
                    self.add(f"{where}.paths", path, item)
            for sub in (c for c in item.children if c.type in ("bullet_list", "ordered_list")):
                for bullet in sub.children:
                    self.cluster_bullet(where, cluster, bullet)

    def cluster_bullet(self, where: str, cluster: dict[str, Any], bullet: SyntaxTreeNode) -> None:
        inline = _inline(bullet)
        if inline is None:
            return
        keyed = _KEYED.match(_squash(_plain(inline)))
        key, value = (keyed.group(1).lower(), keyed.group(2)) if keyed else ("", "")
        codes = _codes(inline)
        if key == "cohesive because":
            cluster["cohesion"] = value
            self.note(f"{where}.cohesion", bullet)
        elif key == "agent" and value and " " not in value:
            cluster["agent"] = value
            self.note(f"{where}.agent", bullet)
        elif key == "verify" and codes:
            for command in codes:
                self.add(f"{where}.verify", command, bullet)
        elif key == "kind" and value in ("build", "investigation"):
            cluster["kind"] = value
            self.note(f"{where}.kind", bullet)
        elif key == "depends on" and value:
            for name in value.split(","):
                self.add(f"{where}.depends_on", _cluster_name(name), bullet)
        else:
            self.add(f"{where}.tasks", _task(bullet), bullet)

    def integration(self, items: SyntaxTreeNode) -> None:
        section = self.out.data.setdefault("integration", {})
        for item in items.children:
            inline = _inline(item)
            keyed = _KEYED.match(_squash(_plain(inline))) if inline else None
            key, value = (keyed.group(1).lower(), keyed.group(2).strip()) if keyed else ("", "")
            codes = _codes(inline) if inline else []
            if key == "verify" and codes:
                for command in codes:
                    self.add("integration.verify", command, item)
            elif key == "agent" and value:
                section["agent"] = value
                self.note("integration.agent", item)
            elif key == "land" and value.lower() in _YES_NO:
                section["land"] = _YES_NO[value.lower()]
                self.note("integration.land", item)
            elif key == "approve" and value.lower() in _YES_NO:
                section["approve"] = _YES_NO[value.lower()]
                self.note("integration.approve", item)
            else:
                self.problem("integration", "a bullet here says 'Verify: `command`', 'Agent: name', "
                             "'Land: yes' or 'Approve: yes' (or no); not "
                             f"{_squash(inline.content) if inline else 'this'!r}", item)


def _task(bullet: SyntaxTreeNode) -> str:
    """A task bullet as one line, its nested bullets folded in: ``Routes: /login; /me``."""
    text = " ".join(_squash(p.children[0].content) for p in bullet.children
                    if p.type == "paragraph" and p.children)
    subs = [_task(b) for lst in bullet.children if lst.type in ("bullet_list", "ordered_list")
            for b in lst.children]
    if subs:
        text = f"{text.rstrip(':')}: {'; '.join(subs)}" if text else "; ".join(subs)
    return text


def parse_markdown(text: str, file: str) -> MarkdownPlan:
    """Read a markdown plan. Problems of its shape (an unknown section, a cluster without a bold
    name, a bullet not understood) are collected, not raised; validation happens on the result.
    Only a nesting too deep to walk raises ``PlanError`` at once."""
    reader = _Reader(file)
    front, body, problem = split_front_matter(text)
    reader.out.front_matter = front
    if problem:
        reader.out.problems.append(Problem(file, "front matter", problem, 1))
    handlers: dict[str, Callable[[SyntaxTreeNode], None]] = {
        "clusters": reader.clusters,
        "contracts": lambda node: reader.paths_section("contracts", node),
        "shared": lambda node: reader.paths_section("shared", node),
        "integration": reader.integration,
    }
    tokens = MarkdownIt("commonmark").parse(body)
    too_deep = _too_deep(tokens)
    if too_deep is not None:
        # markdown-it bounds block nesting but not emphasis (``***…``); its tree recurses per level.
        raise PlanError([Problem(file, "plan", f"nests deeper than {MAX_DEPTH} levels; a plan is a few "
                                 "levels deep", too_deep)])
    section: str | None = None
    title_seen = False
    for node in SyntaxTreeNode(tokens).children:
        if node.type == "heading" and node.tag in ("h1", "h2"):
            title = _squash(_plain(node))
            if node.tag == "h1" and title_seen:
                reader.problem(f"# {title}", "a plan has one title ('# …'); make this a '## ' section", node)
            elif node.tag == "h1":
                title_seen = True
                if slugify(title):
                    reader.out.data["name"] = slugify(title)
                    reader.note("name", node)
            elif title.lower() in handlers:
                section = title.lower()
                reader.note(section, node)
            else:
                section = "unknown"
                reader.problem(f"## {title}", "unknown section; the sections are Clusters, Contracts, Shared "
                               "and Integration (set other fields in YAML front matter)", node)
        elif section is None and node.type == "paragraph" and "goal" not in reader.out.data:
            reader.out.data["goal"] = _squash(_plain(node))
            reader.note("goal", node)
        elif section in handlers and node.type in ("bullet_list", "ordered_list"):
            handlers[section](node)
    return reader.out
