"""Between "agent finished" and "merge": did each cluster stay inside its scope?

A cluster's change is the set of files its branch changed since its base (renames counted as
delete + add, so a file moved out of the cluster cannot hide). Every one must lie in the
cluster's owned paths or the shared files, and no contract file may be touched.
"""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks import gitops
from tasks.context import ClusterRecord, RunContext
from tasks.paths import PathSet

CheckStatus = Literal["ok", "empty", "violation", "agent-failed"]


class ClusterCheck(BaseModel):
    cluster: str
    status: CheckStatus
    mergeable: bool
    files_changed: list[str] = Field(default_factory=list)
    outside_scope: list[str] = Field(default_factory=list)
    contracts_touched: list[str] = Field(default_factory=list)
    verify: str = "none"
    note: str = ""


def _verify_summary(record: ClusterRecord) -> str:
    if not record.verify:
        return "none" if not record.attempts or record.status == "succeeded" else "not run"
    return "passed" if all(v.ok for v in record.verify) else f"failed: {record.verify[-1].command}"


def check_cluster(ctx: RunContext, record: ClusterRecord) -> ClusterCheck:
    """The scope check for one cluster's branch against the base it started from."""
    verify = _verify_summary(record)
    if record.status != "succeeded":
        return ClusterCheck(cluster=record.cluster, status="agent-failed", mergeable=False, verify=verify,
                            note=record.error or (record.attempts[-1].failure or "" if record.attempts else ""))
    changed = gitops.changed_files(ctx.repo, record.base_sha, record.branch)
    spec = ctx.plan.cluster(record.cluster)
    allowed = PathSet([*spec.paths, *ctx.plan.shared])
    contracts = PathSet(ctx.plan.contracts)
    touched = contracts.filter(changed)
    outside = [p for p in changed if not allowed.matches(p) and p not in touched]
    policy = ctx.plan.contract.on_violation
    if outside or touched:
        what = ", ".join(filter(None, [f"{len(outside)} file(s) outside its paths" if outside else "",
                                       f"{len(touched)} contract file(s) edited" if touched else ""]))
        return ClusterCheck(cluster=record.cluster, status="violation", mergeable=policy == "warn",
                            files_changed=changed, outside_scope=outside, contracts_touched=touched,
                            verify=verify, note=f"{what}; policy {policy}: "
                            + ("merged anyway" if policy == "warn" else "not merged"))
    if not changed:
        return ClusterCheck(cluster=record.cluster, status="empty", mergeable=True, verify=verify,
                            note="the agent changed no file")
    return ClusterCheck(cluster=record.cluster, status="ok", mergeable=True, files_changed=changed,
                        verify=verify)


def check_table(checks: list[ClusterCheck]) -> list[dict[str, object]]:
    def short(paths: list[str]) -> str:
        return ", ".join(paths[:10]) + (f" (+{len(paths) - 10} more)" if len(paths) > 10 else "")

    return [{"cluster": c.cluster, "status": c.status, "files changed": len(c.files_changed),
             "outside owned and shared paths": short(c.outside_scope) or "-",
             "contract files touched": short(c.contracts_touched) or "-",
             "verify": c.verify, "note": c.note or "-"} for c in checks]


@task(name="check-contract", cache_policy=NO_CACHE)
def contract_check(ctx: RunContext, records: list[ClusterRecord]) -> list[ClusterCheck]:
    """Check every cluster's scope and publish the ``contract-check-<plan>`` artifact."""
    checks = [check_cluster(ctx, r) for r in records]
    create_table_artifact(key=f"contract-check-{ctx.plan.name}", table=check_table(checks),
                          description=f"Contract check of plan {ctx.plan.name}: scope, contracts, verify")
    return checks
