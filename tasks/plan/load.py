"""Load a plan file, either spelling, and check every rule of SPEC 2 before anything is made.

Every problem is collected and raised at once as a ``PlanError`` (exit status 2), each naming
the file, the field (a dotted path such as ``clusters.1.paths.0``, counting from 0), the line
where it is known, and what to do. The rules run on the raw data as well as through the
models, so a plan with a typo in one field still gets told about its overlapping paths.
Loading reads the plan and asks git questions; it creates nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from prefect_work_clusters.tasks.errors import PlanError, Problem
from prefect_work_clusters.tasks.plan.bounds import size_problem, yaml_problem
from prefect_work_clusters.tasks.plan.markdown import parse_markdown
from prefect_work_clusters.tasks.plan.models import CommandAgent, Plan, slugify
from prefect_work_clusters.tasks.plan.paths import normalize
from prefect_work_clusters.tasks.plan.rules import Found, check_repo, check_rules, path_lists


def load_plan(path: Path, repo: Path | None = None, *, base: str | None = None) -> Plan:
    """Read and validate the plan at ``path`` (``.yaml``, ``.yml`` or ``.md``).

    With ``repo``, the checks that need the repository run too (contract files exist, the base
    ref resolves, git accepts the branch names). ``base`` replaces the plan's own ``base``.
    Raises ``PlanError`` listing every problem.

    >>> load_plan(Path("plans/auth-system.md"), Path("."))  # doctest: +SKIP
    """
    file = str(path)
    data, lines, problems = _read(path)
    data.setdefault("name", slugify(path.stem))
    if base is not None:
        data["base"] = base
        lines.pop("base", None)
    _normalize_paths(data)
    found: list[Found] = []
    plan: Plan | None = None
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        found += _model_problems(exc, data)
    found += check_rules(data)
    if repo is not None:
        found += check_repo(data, repo)
    problems += [Problem(file, where, message, _line_of(lines, where)) for where, message in found]
    if problems or plan is None:
        raise PlanError(sorted(problems, key=lambda p: (p.line is None, p.line or 0)))
    return plan


# -- reading -------------------------------------------------------------------------------------


def _read(path: Path) -> tuple[dict[str, Any], dict[str, int], list[Problem]]:
    file = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".md"):
        ending = f"not {suffix!r}" if suffix else "not nothing"
        raise PlanError([Problem(file, "plan", f"a plan file's name ends in .yaml, .yml or .md, {ending}")])
    try:
        too_big = size_problem(path.stat().st_size)
        if too_big:
            raise PlanError([Problem(file, "plan", too_big)])
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PlanError([Problem(file, "plan", f"cannot be read: {reason}")]) from None
    if suffix != ".md":
        return _yaml_mapping(text, file, first_line=1, what="the plan")
    md = parse_markdown(text, file)
    if md.front_matter is not None:
        front, front_lines, twice = _yaml_mapping(md.front_matter, file, first_line=2, what="the front matter")
        _merge(md.data, front, md.lines)
        md.lines.update(front_lines)
        md.problems += twice
    return md.data, md.lines, md.problems


def _yaml_mapping(text: str, file: str, *, first_line: int,
                  what: str) -> tuple[dict[str, Any], dict[str, int], list[Problem]]:
    """YAML text as a mapping, with the line of every key and list item (by dotted field path),
    and a problem for each key given twice (PyYAML would silently keep the last)."""
    hostile = yaml_problem(text)
    if hostile is not None:
        reason, line = hostile
        raise PlanError([Problem(file, "plan", f"{what} {reason}",
                                 line + first_line - 1 if line else None)])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        line = mark.line + first_line if mark is not None else None
        raise PlanError([Problem(file, "plan", f"{what} is not valid YAML: {reason}", line)]) from None
    if data is None and first_line == 2:
        data = {}
    if not isinstance(data, dict):
        shape = "empty" if data is None else f"a {type(data).__name__}"
        raise PlanError([Problem(file, "plan", f"{what} must be a mapping of fields (name:, clusters:, …), "
                                 f"not {shape}", first_line)])
    lines: dict[str, int] = {}
    twice = [Problem(file, where, "is given twice; keep one", line)
             for where, line in _node_lines(node, "", lines, first_line)]
    return data, lines, twice


def _node_lines(node: yaml.Node | None, prefix: str, lines: dict[str, int],
                first: int) -> Iterator[tuple[str, int]]:
    """Fill ``lines``; yield each key that a mapping gives twice."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            where = f"{prefix}{key_node.value}"
            line = key_node.start_mark.line + first
            if where in seen:
                yield where, line
            seen.add(where)
            lines.setdefault(where, line)
            yield from _node_lines(value_node, where + ".", lines, first)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[f"{prefix}{index}"] = item.start_mark.line + first
            yield from _node_lines(item, f"{prefix}{index}.", lines, first)


def _merge(data: dict[str, Any], front: dict[str, Any], lines: dict[str, int], prefix: str = "") -> None:
    """Front matter wins: mappings merge key by key, anything else replaces what the body said."""
    for key, value in front.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            _merge(data[key], value, lines, where + ".")
            continue
        data[key] = value
        for stale in [k for k in lines if k == where or k.startswith(where + ".")]:
            del lines[stale]


def _line_of(lines: dict[str, int], where: str) -> int | None:
    parts = where.split(".")
    while parts:
        if ".".join(parts) in lines:
            return lines[".".join(parts)]
        parts.pop()
    return None


def _normalize_paths(data: dict[str, Any]) -> None:
    for _, items in path_lists(data):
        items[:] = [normalize(p) if isinstance(p, str) else p for p in items]


# -- the model's own checks ---------------------------------------------------------------------


def _model_problems(exc: ValidationError, data: dict[str, Any]) -> list[Found]:
    out: list[Found] = []
    for err in exc.errors():
        loc = list(err["loc"])
        # An agent is a name or {command: [...]}; pydantic reports both branches of that union.
        # Keep only the branch the user wrote: a mapping means the command form.
        for tag, wants_mapping in (("str", False), (CommandAgent.__name__, True)):
            at = next((i for i in range(1, len(loc)) if loc[i] == tag and loc[i - 1] == "agent"), None)
            if at is not None:
                if isinstance(_get(data, loc[:at]), dict) != wants_mapping:
                    break
                del loc[at]
        else:
            out.append((".".join(str(p) for p in loc), _friendly(err["type"], loc, err["msg"], err["input"])))
    return out


def _friendly(kind: str, loc: list[Any], msg: str, value: Any) -> str:
    if kind == "extra_forbidden":
        known = _fields_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown field; {hint}the fields here are: {', '.join(known)}"
    if kind == "missing" and loc == ["clusters"]:
        return "is required: list the clusters (in markdown, under a '## Clusters' heading)"
    if kind == "missing":
        return "is required"
    if kind == "string_pattern_mismatch" and loc[-1] == "name":
        return slug_message(str(value))
    shown = f" (got {value!r})" if isinstance(value, (str, int, float, bool)) else ""
    if loc[-1] == "agent":
        return "should be an agent's name (claude, codex, aider, a saved block) or {command: [...]}" + shown
    if kind in ("model_type", "dict_type"):
        return "should be a mapping of fields (key: value)" + shown
    return msg.removeprefix("Input ") + shown


def slug_message(value: str) -> str:
    """What is wrong with a name that is not a slug, and the slug it could be."""
    suggestion = slugify(value)
    hint = f", e.g. {suggestion!r}" if suggestion else ""
    return (f"{value!r} is not a valid name: use lowercase letters, digits and '-', starting with a "
            f"letter or digit{hint}")


def _get(data: Any, loc: list[Any]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _fields_at(loc: list[Any]) -> list[str]:
    """The field names the model at ``loc`` accepts (for the did-you-mean of an unknown field)."""
    model: type[BaseModel] = Plan
    for part in (p for p in loc if isinstance(p, str)):
        fields = {(info.alias or name): info for name, info in model.model_fields.items()}
        inner = _model_in(fields[part].annotation) if part in fields else None
        if inner is None:
            return []
        model = inner
    return [(info.alias or name) for name, info in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, get_args(annotation)) if m is not None), None)
