"""Between "agent finished" and "merge", and again on the integrated tree: was the contract kept?

Per cluster, a row for each check:

- scope: every file its branch changed since its base (``--no-renames``: a rename counts as
  delete + add, so a file moved out of the cluster cannot hide) lies in its owned paths or the
  shared files; a branch that changed nothing is a warning;
- contracts: no contract file is touched;
- conformance: the ``provides`` entries whose module the cluster owns satisfy their contract
  types (``tasks.checks.conformance``, in its worktree), and TypeScript contracts pass ``tsc``;
- independence: with ``contract.independent``, its packages import no other cluster's
  (``tasks.checks.independence``);
- verify: its verify commands' result; then the verdict: may it be merged?

After the merges the integrated tree gets conformance and independence rows of its own.

Policy ``contract.on_violation``: ``retry`` (default) checks after every attempt and runs the agent
again with the report as feedback (``attempt_violation``, called by ``tasks.agents.attempt``), within
``limits.retries``; a cluster still violating then fails and is not merged. ``fail`` does not
retry and does not merge; ``warn`` merges and reports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from prefect_work_clusters.tasks.checks.conformance import (
    Outcome,
    python_conformance,
)
from prefect_work_clusters.tasks.checks.independence import cluster_packages, independence, ts_independence
from prefect_work_clusters.tasks.checks.rows import (
    VERDICT,
    CheckName,
    CheckRow,
    CheckStatus,
    ClusterCheck,
    blocking,
    publish,
    publish_integrated,
)
from prefect_work_clusters.tasks.checks.symlinks import bad_symlinks
from prefect_work_clusters.tasks.checks.ts_conformance import ts_contracts, typescript_conformance
from prefect_work_clusters.tasks.context import ClusterRecord, RunContext
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import refs as gitrefs
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.plan.paths import PathSet
from prefect_work_clusters.tasks.plan.refs import Ref, all_provides, provided_by

INTEGRATED = "integration"  # the cluster column of the integrated tree's rows
MAX_TIMEOUT = 600.0
MAX_REPORT = 1900  # characters of feedback: the prompt keeps the last 2000 of an attempt's output


def _row(cluster: str, check: CheckName, outcome: Outcome) -> CheckRow:
    return CheckRow(cluster=cluster, check=check, status=outcome.status, evidence=outcome.evidence,
                    note=outcome.note)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def scope_rows(ctx: RunContext, cluster: str, changed: list[str]) -> list[CheckRow]:
    """The scope and contracts rows for a cluster that changed ``changed``."""
    allowed = PathSet([*ctx.plan.cluster(cluster).paths, *ctx.plan.shared])
    touched = PathSet(ctx.plan.contracts).filter(changed)
    outside = [p for p in changed if not allowed.matches(p) and p not in touched]
    if outside:
        scope = Outcome("violation", outside, f"{len(outside)} of {_n(len(changed), 'changed file')} lie "
                                              "outside its owned and shared paths")
    elif not changed:
        scope = Outcome("warning", note="the branch changed no file")
    else:
        scope = Outcome("ok", note=f"{_n(len(changed), 'changed file')}, all in owned or shared paths")
    contracts = (Outcome("violation", touched, "contract files are frozen for cluster agents") if touched
                 else Outcome("ok", note=f"{_n(len(ctx.plan.contracts), 'contract file')} untouched"))
    return [_row(cluster, "scope", scope), _row(cluster, "contracts", contracts)]


def tree_rows(ctx: RunContext, who: str, tree: Path | None, pairs: list[tuple[Ref, Ref]],
              only: str | None = None, sparse: bool = False, gone: str = "") -> list[CheckRow]:
    """Conformance and independence rows for the tree at ``tree`` (None: not available, ``gone`` says why)."""
    independent, has_ts = ctx.plan.contract.independent, bool(ts_contracts(ctx.plan.contracts))
    if tree is None:
        wanted: list[CheckName] = ["conformance"] if pairs or has_ts else []
        wanted += ["independence"] if independent else []
        return [_row(who, check, Outcome("skipped", note=gone)) for check in wanted]
    env = {k: v for k, v in os.environ.items() if k not in gitops.LOCAL_ENV_VARS}
    work, timeout = ctx.runs_dir / "conformance" / who, min(ctx.plan.limits.timeout_seconds, MAX_TIMEOUT)
    rows: list[CheckRow] = []
    python_pairs = [p for p in pairs if not p[0].typescript]
    if python_pairs:
        cache = ctx.runs_dir / "conformance" / ".mypy_cache"
        rows.append(_row(who, "conformance", python_conformance(tree, python_pairs, work, env, timeout, cache)))
    if has_ts:
        ts_pairs = [p for p in pairs if p[0].typescript]
        ts = (Outcome("skipped", note="sparse checkout: TypeScript is checked on the integrated tree") if sparse
              else typescript_conformance(tree, ctx.plan.contracts, work, env, timeout, ts_pairs))
        rows += [_row(who, "conformance", ts)] if ts else []
    if independent:
        rows.append(_row(who, "independence",
                         independence(tree, cluster_packages(ctx.plan), work, env, timeout, only=only)))
        if has_ts:
            rows.append(_row(who, "independence", ts_independence(tree, ctx.plan, only=only)))
    return rows


def _tree_of(repo: Path, record: ClusterRecord, tip: str, at_head: bool = False) -> Path | None:
    """The cluster's worktree when it still holds the branch tip (``at_head``: the caller just
    read ``tip`` as the worktree's HEAD, so it is not read again). Its HEAD is read as the refs
    are, without a git process while it names a branch (100 of them were a third of the check of
    a 100-cluster run)."""
    wt = record.worktree
    if wt.is_dir() and (wt / ".git").exists() and (at_head or gitrefs.head(repo, wt) == tip):
        return wt
    return None


def cluster_rows(ctx: RunContext, record: ClusterRecord, tip: str, changed: list[str],
                 at_head: bool = False) -> list[CheckRow]:
    """Scope, contracts, conformance and independence rows of one cluster's branch at ``tip``,
    which changed ``changed`` since the cluster's base (``at_head``: ``tip`` is its worktree's HEAD)."""
    name = record.cluster
    rows = scope_rows(ctx, name, changed)
    links = bad_symlinks(ctx.repo, tip, changed,
                         lambda: {c.name: PathSet(c.paths) for c in ctx.plan.clusters if c.name != name})
    if links:
        rows.append(_row(name, "symlinks", Outcome("violation", links, "symlinks that leave the repository "
                                                                    "or reach into another cluster's paths")))
    return rows + tree_rows(ctx, name, _tree_of(ctx.repo, record, tip, at_head), provided_by(ctx.plan, name), only=name,
                            sparse=ctx.plan.worktree.checkout == "sparse",
                            gone="its worktree no longer holds the branch; checked on the integrated tree")


def violation_report(ctx: RunContext, record: ClusterRecord, bad: list[CheckRow]) -> str:
    """What an agent is told when its attempt broke the contract."""
    spec = ctx.plan.cluster(record.cluster)
    owned = ", ".join(f"`{p}`" for p in [*spec.paths, *ctx.plan.shared])
    lines = ["The contract check rejected this attempt. Fix every point below. Your earlier commits stay on",
             "the branch, so undo an out-of-scope change explicitly.", ""]
    for row in bad:
        lines.append(f"- {row.check}: {row.status}" + (f" ({row.note})" if row.note else ""))
        lines += [f"    - {e}" for e in row.evidence[:20]]
        if row.check in ("scope", "contracts"):
            allowed = f"you may edit only {owned}" if row.check == "scope" else "contract files are frozen"
            lines.append(f"    ({allowed}; restore each file with `git checkout {record.base_sha[:12]} -- "
                         "<path>`, or `git rm <path>` if it did not exist there)")
    text = "\n".join(lines)
    return text if len(text) <= MAX_REPORT else text[:MAX_REPORT] + "\n… (the rest is in the contract-check artifact)"


def attempt_violation(ctx: RunContext, record: ClusterRecord, tip: str,
                      changed: list[str] | None = None) -> tuple[str, str] | None:
    """Under policy retry: ``(summary, report)`` when the attempt just finished broke the contract.
    ``tip``: its worktree's HEAD as the attempt just read it; ``changed``: the files ``tip``
    changed since the base, when the attempt already asked git (one ``diff`` an attempt)."""
    if ctx.plan.contract.on_violation != "retry":
        return None
    if changed is None:
        changed = githistory.changed_files(ctx.repo, record.base_sha, tip)
    bad = blocking(cluster_rows(ctx, record, tip, changed, at_head=True))
    if not bad:
        return None
    summary = "; ".join(f"{r.check}: {len(r.evidence) or 1} problem(s)" for r in bad)
    return f"contract check failed ({summary})", violation_report(ctx, record, bad)


def _verify_row(record: ClusterRecord) -> CheckRow:
    results = record.verify
    if not results:
        note = "no verify commands" if record.status == "succeeded" else "not run"
        return CheckRow(cluster=record.cluster, check="verify", status="skipped", note=note)
    failed = [v for v in results if not v.ok]
    return CheckRow(cluster=record.cluster, check="verify", status="failed" if failed else "ok",
                    evidence=[f"`{v.command}`: " + ("passed" if v.ok else f"exit {v.exit_code}") for v in results])


def _verify_summary(record: ClusterRecord) -> str:
    if not record.verify:
        return "none" if not record.attempts or record.status == "succeeded" else "not run"
    return "passed" if all(v.ok for v in record.verify) else f"failed: {record.verify[-1].command}"


def check_cluster(ctx: RunContext, record: ClusterRecord,
                  tips: Mapping[str, str | None] | None = None) -> ClusterCheck:
    """Every check of one cluster's branch against the base it started from, and the verdict.
    ``tips``: the plan's branches and their commits, listed once for many clusters."""
    policy, name = ctx.plan.contract.on_violation, record.cluster
    tip = tips.get(record.branch) if tips is not None else gitops.resolve_ref(ctx.repo, f"refs/heads/{record.branch}")
    changed = githistory.changed_files(ctx.repo, record.base_sha, tip) if tip else []
    rows = cluster_rows(ctx, record, tip, changed) if tip else []
    scope = {r.check: r for r in rows}
    outside = scope["scope"].evidence if "scope" in scope else []
    touched = scope["contracts"].evidence if "contracts" in scope else []
    bad = blocking(rows)
    status: CheckStatus
    if record.status != "succeeded":
        last = record.attempts[-1].failure if record.attempts else None
        status, mergeable, note = "agent-failed", False, record.error or last or "the agent did not finish"
    elif bad:
        status, mergeable = "violation", policy == "warn"
        note = (", ".join(f"{r.check} {r.status}" for r in bad) + f"; policy {policy}: "
                + ("merged anyway" if mergeable else "not merged"))
    else:
        empty = "scope" in scope and scope["scope"].status == "warning"
        status, mergeable, note = ("empty" if empty else "ok"), True, "the agent changed no file" if empty else ""
    tampering = [f"attempt {a.attempt}: {t}" for a in record.attempts for t in a.tampering]
    if tampering:
        rows.append(CheckRow(cluster=name, check="git-dir", status="violation", evidence=tampering,
                             note="changed the shared git dir; restored after the attempt"))
    rows.append(_verify_row(record))
    rows.append(CheckRow(cluster=name, check="verdict", status=VERDICT[status],
                         evidence=["passed to integration" if mergeable else "kept out of integration"], note=note))
    return ClusterCheck(cluster=name, status=status, mergeable=mergeable and tip is not None, files_changed=changed,
                        outside_scope=outside, contracts_touched=touched, verify=_verify_summary(record), note=note,
                        rows=rows, head_sha=tip)


def check_integrated(ctx: RunContext, tree: Path | None, why_not: str = "") -> list[CheckRow]:
    """Conformance of every provides entry and independence of every package on the merged tree."""
    return tree_rows(ctx, INTEGRATED, tree, all_provides(ctx.plan), gone=why_not)


def integrated_ok(ctx: RunContext, rows: list[CheckRow]) -> bool:
    return ctx.plan.contract.on_violation == "warn" or not blocking(rows)


@task(name="check-contract", cache_policy=NO_CACHE)
def contract_check(ctx: RunContext, records: list[ClusterRecord]) -> list[ClusterCheck]:
    """Check every cluster, several at once (a type checker per cluster is the slow part: ``tsc``
    takes seconds), and publish the ``contract-check-<plan>`` artifact."""
    at_once = max(1, min(len(records), ctx.plan.limits.concurrency, os.cpu_count() or 1))
    tips = gitworktrees.branch_tips(ctx.repo, ctx.prefix)  # one git process, not one per cluster
    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="check") as pool:
        checks = list(pool.map(lambda r: check_cluster(ctx, r, tips), records))
    publish(ctx, checks)
    return checks


@task(name="check-integrated-tree", cache_policy=NO_CACHE)
def contract_check_integrated(ctx: RunContext, checks: list[ClusterCheck], tree: str | None,
                              why_not: str = "") -> list[CheckRow]:
    """Check the integrated tree and publish its own ``contract-check-integrated-<plan>`` artifact."""
    rows = check_integrated(ctx, Path(tree) if tree else None, why_not)
    if rows:
        publish_integrated(ctx, rows)
    return rows
