"""The example's synthesis agent: SCRIPTED, not an LLM, and the action plan it writes says so.

work-clusters runs ``python -m prefect_work_clusters.flows.examples.perf_investigation.synthesis`` in the role
``synthesis``. It checks that its prompt holds every finding, reads the typed findings from
``$WC_FINDINGS_DIR/findings.json``, and writes the fixes, grouped by the paths they concern and
ordered by severity, to ``$WC_ACTION_PLAN_FILE``. A real synthesis agent would weigh them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from prefect_work_clusters.tasks.investigation.findings import TypedFinding
from prefect_work_clusters.tasks.investigation.fixes import render_action_plan

NOTE = ("**Scripted synthesis, not an LLM.** `flows/examples/perf_investigation/synthesis.py` grouped the "
        "findings' proposed fixes by the paths they concern and ordered them by severity and by how many "
        "clusters saw them. A synthesis agent (`integration.agent: claude`) would also weigh effort against "
        "impact and merge findings that share a cause.")


def main() -> int:
    prompt = Path(os.environ["WC_PROMPT_FILE"]).read_text()
    raw = json.loads((Path(os.environ["WC_FINDINGS_DIR"]) / "findings.json").read_text())
    findings = [TypedFinding.model_validate(f) for f in raw]
    missing = [f.id for f in findings if f"`{f.id}`" not in prompt or f.title not in prompt]
    if missing:
        print(f"scripted synthesis: the prompt lacks findings {', '.join(missing)}", file=sys.stderr)
        return 3
    text = render_action_plan(findings, f"Action plan: {os.environ['WC_PLAN']}", NOTE, Path(os.environ["WC_WORKTREE"]))
    Path(os.environ["WC_ACTION_PLAN_FILE"]).write_text(text)
    print(f"scripted synthesis: {len(findings)} findings into {os.environ['WC_ACTION_PLAN_FILE']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
