"""The contract check's cost on a large repo (issue 3): the scope check of every cluster branch,
and separately the conformance (mypy) and independence (grimp) checks of the integrated tree.

    python bench/bench_scope.py [--files 20000] [--clusters 8] [--changed 100] [--out results.json]

The repo is made with ``git fast-import`` (bench/common.py); each cluster branch changes
``--changed`` files in its folder and adds a provider module. Planted faults check that the
numbers come from checks that work: every fourth cluster writes a file outside its folder, one
provider has a wrong signature, one imports another cluster's package. The scope check is timed
through ``check_cluster`` exactly as the flow calls it; target: under 1 s for all clusters.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from common import base_parser, cluster_names, emit, git, make_repo, verdict, workdir

from prefect_work_clusters.tasks.checks.conformance import python_conformance
from prefect_work_clusters.tasks.checks.contract import check_cluster
from prefect_work_clusters.tasks.checks.independence import cluster_packages, independence
from prefect_work_clusters.tasks.context import ClusterRecord, RunContext
from prefect_work_clusters.tasks.plan.models import Cluster, ContractPolicy, Plan
from prefect_work_clusters.tasks.plan.refs import Ref

CONTRACT = "from typing import Protocol\n\n\nclass Proto(Protocol):\n    def get(self, key: str) -> str: ...\n"
PROVIDER = "class Impl:\n    def get(self, key: {kind}) -> str:\n        return str(key)\n"
TARGET_SECONDS = 1.0


def _commit(repo: Path, branch: str, parent: str, files: dict[str, str], deletes: list[str], message: str) -> str:
    """A commit of ``parent`` plus ``files`` minus ``deletes`` on ``branch``, through fast-import."""
    chunks = [f"commit refs/heads/{branch}\ncommitter Bench <bench@localhost> 1700000000 +0000\n"
              f"data {len(message)}\n{message}\nfrom {parent}\n".encode()]
    chunks += [f"D {path}\n".encode() for path in deletes]
    for path, text in files.items():
        body = text.encode()
        chunks.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(body), body))
    git(repo, "fast-import", "--quiet", "--force", stdin=b"".join(chunks))
    return git(repo, "rev-parse", f"refs/heads/{branch}")


def _cluster_change(repo: Path, index: int, name: str, changed: int, clusters: list[str]) -> tuple[dict[str, str],
                                                                                                  list[str]]:
    """The files one cluster's branch writes and deletes, faults planted as the module says."""
    owned = git(repo, "ls-tree", "-r", "--name-only", "main", f"{name}/").splitlines()
    files = {p: f"# changed by {name}\nVALUE = {n}\n" for n, p in enumerate(owned[:changed])}
    files[f"{name}/__init__.py"] = ""
    provider = PROVIDER.format(kind="int" if index == 1 else "str")
    if index == 2 and len(clusters) > 3:
        provider = f"from {clusters[3]} import provider as _other\n\n" + provider
    files[f"{name}/provider.py"] = provider
    deletes: list[str] = []
    if index % 4 == 3:
        files[f"lib/outside_{name}.py"] = "LEAK = 1\n"
        deletes.append(owned[-1])  # and a rename out of its folder: delete here, add in lib/
        files[f"lib/moved_{name}.py"] = "MOVED = 1\n"
    return files, deletes


def run(files: int, cluster_count: int, changed: int, tmp: Path) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    repo = tmp / "repo"
    setup = make_repo(repo, files, cluster_count)
    clusters = cluster_names(cluster_count)
    base = _commit(repo, "main", "refs/heads/main^0", {"contracts/__init__.py": "", "contracts/api.py": CONTRACT},
                   [], "contracts")
    everything: dict[str, str] = {}
    removed: list[str] = []
    for i, name in enumerate(clusters):
        change, deletes = _cluster_change(repo, i, name, changed, clusters)
        _commit(repo, f"clusters/bench/{name}", base, change, deletes, f"{name} work")
        everything.update(change)
        removed += deletes
    integrated = _commit(repo, "integrated", base, everything, removed, "all clusters")

    plan = Plan(name="bench", contracts=["contracts/api.py"], shared=["README.md"],
                clusters=[Cluster(name=c, paths=[f"{c}/"]) for c in clusters],
                provides={f"{c}.provider:Impl": "contracts.api:Proto" for c in clusters},
                contract=ContractPolicy(on_violation="fail", independent=True))
    ctx = RunContext(plan=plan, plan_file=tmp / "bench.yaml", repo=repo, workspace=tmp / "workspace")
    records = [ClusterRecord(cluster=c, branch=ctx.branch(c), worktree=ctx.worktree(c), base_sha=base,
                             status="succeeded") for c in clusters]

    scope_runs: list[float] = []
    for _ in range(5):
        t0 = time.perf_counter()
        checks = [check_cluster(ctx, r) for r in records]
        scope_runs.append(time.perf_counter() - t0)
    kept_out = sorted(c.cluster for c in checks if not c.mergeable)

    git(repo, "checkout", "-q", "-f", integrated)  # main moved under the checkout: -f
    pairs = [(Ref.parse(k), Ref.parse(v)) for k, v in plan.provides.items()]
    env = dict(os.environ)
    timings: dict[str, float] = {}
    outcomes = {}
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        outcomes[label] = python_conformance(repo, pairs, tmp / "conformance", env, 600, tmp / "mypy-cache")
        timings[label] = time.perf_counter() - t0
    t0 = time.perf_counter()
    imports = independence(repo, cluster_packages(plan), tmp / "independence", env, 600)
    timings["independence"] = time.perf_counter() - t0

    results: dict[str, Any] = {
        "files": len(git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()),
        "clusters": cluster_count, "changed_per_cluster": changed, "setup_seconds": setup,
        "scope_seconds_first": round(scope_runs[0], 4), "scope_seconds_median": round(statistics.median(scope_runs), 4),
        "scope_seconds_per_cluster": round(statistics.median(scope_runs) / cluster_count, 4),
        "kept_out": kept_out, "outside_found": {c.cluster: c.outside_scope for c in checks if c.outside_scope},
        "conformance_cold_seconds": round(timings["cold"], 3), "conformance_warm_seconds": round(timings["warm"], 3),
        "conformance_problems": outcomes["warm"].evidence,
        "independence_seconds": round(timings["independence"], 3), "independence_problems": imports.evidence,
    }
    scope = statistics.median(scope_runs)
    rows = [
        (f"scope check, {cluster_count} clusters (median of 5)", f"{scope:.3f} s", f"< {TARGET_SECONDS:g} s",
         verdict(scope, TARGET_SECONDS)),
        ("scope check, first run", f"{scope_runs[0]:.3f} s", "-", "-"),
        (f"conformance, {len(pairs)} provides, mypy cold cache", f"{timings['cold']:.2f} s", "-", "-"),
        (f"conformance, {len(pairs)} provides, mypy warm cache", f"{timings['warm']:.2f} s", "-", "-"),
        (f"independence, grimp on {cluster_count} packages", f"{timings['independence']:.2f} s", "-", "-"),
        ("planted faults found (scope / conformance / imports)",
         f"{len(kept_out)} / {len(outcomes['warm'].evidence)} / {len(imports.evidence)}", "-", "-"),
    ]
    return results, rows


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], files=20_000, clusters=8)
    parser.add_argument("--changed", type=int, default=100, help="files each cluster branch changes (default 100)")
    args = parser.parse_args()
    with workdir("scope", keep=args.keep) as tmp:
        results, rows = run(args.files, args.clusters, args.changed, tmp)
    emit("contract check: scope, conformance, independence", results, rows, args.out)


if __name__ == "__main__":
    main()
