"""The prompt templates of every role (``templates/<role>.md.j2``) and what they share."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from prefect_work_clusters.tasks.context import RunContext

PROMPTS = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), undefined=StrictUndefined,
                      keep_trailing_newline=True, autoescape=False)  # noqa: S701 - markdown, not HTML
LANGS = {".py": "python", ".ts": "typescript", ".tsx": "tsx", ".js": "javascript", ".json": "json",
         ".yaml": "yaml", ".yml": "yaml", ".proto": "protobuf", ".graphql": "graphql", ".sql": "sql"}


def contracts_for_prompt(ctx: RunContext) -> list[dict[str, str]]:
    """Each contract file's path, fence language and full text, as the templates show them."""
    return [{"path": rel, "lang": LANGS.get(Path(rel).suffix, ""),
             "text": (ctx.repo / rel).read_text(errors="replace").rstrip()} for rel in ctx.plan.contracts]
