"""Bounds on a plan file, checked before anything is built from it.

A plan is small: a few dozen clusters, a few hundred lines. A hostile one (a YAML alias bomb,
a 5,000-deep nesting, a file of many megabytes) must get the same exit 2 as any other bad plan,
at once, not a hang or a ``RecursionError``. PyYAML's composer and constructor recurse once per
level, and every walk of a composed graph expands aliases, so the check reads the event stream
(a flat loop) and adds up what the aliases would expand to before anything is composed. Its
scanner is quadratic in the depth of ``[``/``{`` nesting (3,000 levels: 10 s before the first
events), so that depth is bounded first by a plain scan of the text.

This module imports nothing of ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_NODES = 100_000


def _flow_too_deep(text: str) -> int | None:
    """The line where ``[``/``{`` nest past ``4 * MAX_DEPTH``, counting every bracket (quoted,
    in comments, unbalanced in a task's text): a real plan stays far below that, and telling
    quotes apart needs the very scanner this protects."""
    if text.count("[") + text.count("{") <= 4 * MAX_DEPTH:
        return None
    depth, line = 0, 1
    for ch in text:
        if ch == "\n":
            line += 1
        elif ch in "[{":
            depth += 1
            if depth > 4 * MAX_DEPTH:
                return line
        elif ch in "]}":
            depth = max(0, depth - 1)
    return None


@dataclass
class _Open:
    anchor: str | None
    nodes: int = 1


def size_problem(size: int) -> str | None:
    """Why a plan file of ``size`` bytes is refused, or None."""
    if size > MAX_BYTES:
        return (f"is {size:,} bytes; a plan file is at most {MAX_BYTES:,} bytes "
                f"(split the work into several plans)")
    return None


def yaml_problem(text: str) -> tuple[str, int | None] | None:
    """Why ``text`` is too deep or expands too far to be a plan, with the line; or None.

    Malformed YAML is left to the caller's parser, which says where it breaks.

    >>> yaml_problem("a: &x [1, 2]\\nb: *x")
    """
    line = _flow_too_deep(text)
    if line is not None:
        return f"nests deeper than {MAX_DEPTH} levels; a plan is a few levels deep", line
    anchors: dict[str, int] = {}
    stack: list[_Open] = [_Open(None, 0)]
    total = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark else None
            if isinstance(event, yaml.AliasEvent):
                grown = anchors.get(str(event.anchor), 1)
                stack[-1].nodes += grown
                total += grown
            elif isinstance(event, yaml.ScalarEvent):
                stack[-1].nodes += 1
                total += 1
                if event.anchor:
                    anchors[event.anchor] = 1
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                stack.append(_Open(event.anchor))
                total += 1
                if len(stack) - 1 > MAX_DEPTH:
                    return f"nests deeper than {MAX_DEPTH} levels; a plan is a few levels deep", line
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                done = stack.pop()
                stack[-1].nodes += done.nodes
                if done.anchor:
                    anchors[done.anchor] = done.nodes
            if total > MAX_NODES:
                return (f"expands to more than {MAX_NODES:,} values (through '&' anchors and '*' "
                        f"aliases, or sheer size); a plan is far smaller", line)
    except yaml.YAMLError:
        return None
    return None
