"""Clean merges as objects (``git merge-tree`` + ``commit-tree``), the integration worktree caught
up once: the same commits ``git merge --no-ff`` would make, a worktree that ends in step, a run
stopped in between that resumes, and no planted merge driver run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from prefect_work_clusters.tasks.checks import containment
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.integration.ladder import merge_message
from prefect_work_clusters.tasks.integration.tip import record_tip
from tests.conftest import git
from tests.integration_helpers import add_to_registry, commit_cluster, integrate, setup


def _merges(ctx_repo: Path, branch: str, base: str) -> list[tuple[list[str], str]]:
    """(parents, subject) of each commit on ``branch`` since ``base``, oldest first."""
    text = git(ctx_repo, "log", "--reverse", "--first-parent", "--format=%P%x09%s", f"{base}..{branch}")
    return [(p.split(), s) for p, s in (line.split("\t") for line in text.splitlines())]


def _counting_merge_trees(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``git merge-tree`` processes started from here on (their cwd), every git call of ours
    going through ``core.run``."""
    seen: list[str] = []
    real = gitops.run

    def counted(cwd: Path, *args: str, **kwargs: Any) -> Any:
        if "merge-tree" in args:
            seen.append(str(cwd))
        return real(cwd, *args, **kwargs)

    monkeypatch.setattr(gitops, "run", counted)
    return seen


def test_clean_merges_are_the_commits_git_merge_makes_and_the_worktree_is_checked_out_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, base = setup(tmp_path)
    for name in ("api", "ui", "db"):
        commit_cluster(ctx, name, {f"{name}/impl.py": f"NAME = {name!r}\n", "README.md": f"# shop\n{name}\n"
                                   if name == "api" else "# shop\n"})
    merge_trees = _counting_merge_trees(monkeypatch)
    result = integrate(ctx, base)
    assert result.ok and [s.status for s in result.steps] == ["merged"] * 3
    # Each merge is computed once, by the preflight in the integration worktree; the merges take
    # its commits (a second merge-tree per cluster before).
    assert merge_trees == [str(ctx.integration_worktree)] * 3
    assert result.preflight is not None
    made = [s.commit for s in result.steps]
    ours = [base, *made[:-1]]
    assert [result.preflight.merged_commit(s.cluster, o or "", s.checked or "")
            for s, o in zip(result.steps, ours, strict=True)] == made

    tips = [gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.branch(n)}") or "" for n in ("api", "ui", "db")]
    heads = [base] + [s.commit or "" for s in result.steps]
    assert _merges(ctx.repo, ctx.integration_branch, base) == [
        ([heads[n], tips[n]], merge_message(ctx, name, ctx.branch(name), tips[n]))
        for n, name in enumerate(("api", "ui", "db"))]
    # The same tree as git's own merges, made one by one in a scratch worktree.
    scratch = tmp_path / "scratch"
    git(ctx.repo, "worktree", "add", "-q", "--detach", str(scratch), base)
    for tip in tips:
        git(scratch, "merge", "-q", "--no-ff", "--no-edit", tip)
    assert git(scratch, "rev-parse", "HEAD^{tree}") == git(ctx.repo, "rev-parse", f"{result.final_sha}^{{tree}}")
    git(ctx.repo, "worktree", "remove", "--force", str(scratch))

    # No merge ran in the worktree (git merge writes "merge ..." to the reflog); the branch moved
    # once over the three merges made as objects, and the worktree ends in step.
    reflog = git(ctx.repo, "reflog", "show", "--format=%gs", f"refs/heads/{ctx.integration_branch}")
    assert "Merge made by" not in reflog and reflog.count("work-clusters: merge ") == 1
    assert "work-clusters: merge 3 clusters into" in reflog
    wt = ctx.integration_worktree
    assert gitops.head(wt) == result.final_sha and not gitchanges.has_changes(wt)
    assert (wt / "db/impl.py").read_text() == "NAME = 'db'\n" and (wt / "README.md").read_text() == "# shop\napi\n"
    assert not (ctx.runs_dir / "integration-files.json").exists()


def test_a_conflict_after_clean_merges_meets_a_worktree_that_caught_up(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path)
    commit_cluster(ctx, "api", {"api/impl.py": "NAME = 'api'\n"})
    add_to_registry(ctx, "ui")
    commit_cluster(ctx, "db", {"app/registry.py": "REGISTRY = [\n    'core',\n    'db',\n]\n"})

    result = integrate(ctx, base)

    assert [s.status for s in result.steps] == ["merged"] * 3 and result.steps[2].conflicts == ["app/registry.py"]
    wt = ctx.integration_worktree
    assert (wt / "api/impl.py").exists() and (wt / "ui/impl.py").exists() and not gitchanges.has_changes(wt)
    registry = (wt / "app/registry.py").read_text()
    assert "'ui'" in registry and "'db'" in registry


def test_a_run_stopped_while_the_files_lagged_catches_them_up_before_anything_else(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path)
    assert integrate(ctx, base).ok  # the integration worktree exists, at the base
    commit_cluster(ctx, "api", {"api/impl.py": "NAME = 'api'\n"})
    api = gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.branch('api')}") or ""
    # What a run killed right after its first clean merge leaves: the branch moved, the files not.
    tree = git(ctx.repo, "merge-tree", "--write-tree", base, api)
    made = git(ctx.repo, "commit-tree", tree, "-p", base, "-p", api, "-m", merge_message(ctx, "api", "b", api))
    githistory.move_branch(ctx.repo, ctx.integration_branch, made, base, "test: a merge as objects")
    (ctx.runs_dir / "integration-files.json").write_text(json.dumps({"at": base}))
    record_tip(ctx)

    result = integrate(ctx, base)

    assert result.ok and result.steps[0].reason == "merged earlier" and result.final_sha == made
    wt = ctx.integration_worktree
    assert (wt / "api/impl.py").read_text() == "NAME = 'api'\n" and not gitchanges.has_changes(wt)


def test_an_untracked_file_in_the_way_sends_the_merges_back_the_slow_way(tmp_path: Path) -> None:
    """Clean merges made as objects whose files cannot catch up (an untracked file of someone's in
    the integration worktree, where a cluster adds one): the branch goes back to what the files hold,
    and from there the merges run in the worktree, where git names the file in the way."""
    ctx, base = setup(tmp_path)
    assert integrate(ctx, base).ok  # the integration worktree exists, its files at the base
    commit_cluster(ctx, "api", {"api/impl.py": "NAME = 'api'\n"})
    commit_cluster(ctx, "ui", {"ui/impl.py": "NAME = 'ui'\n"})
    wt = ctx.integration_worktree
    (wt / "ui" / "impl.py").write_text("someone's own work\n")

    result = integrate(ctx, base)

    assert [s.status for s in result.steps] == ["merged", "conflict", "not-reached"]
    assert "git refused to merge" in result.steps[1].reason and result.instructions
    # The branch holds the api merge, made in the worktree the slow way, and the files are in step
    # with it; the untracked file is untouched.
    tip = gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.integration_branch}")
    assert tip == gitops.head(wt) == result.steps[0].commit and tip != base
    assert (wt / "api/impl.py").read_text() == "NAME = 'api'\n"
    assert (wt / "ui/impl.py").read_text() == "someone's own work\n"
    assert not (ctx.runs_dir / "integration-files.json").exists()
    reflog = git(ctx.repo, "reflog", "show", "--format=%gs", f"refs/heads/{ctx.integration_branch}")
    assert "back to the merges the integration worktree holds" in reflog


def test_a_run_stopped_while_a_new_integration_worktree_was_written_writes_it_whole(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path)
    commit_cluster(ctx, "api", {"api/impl.py": "NAME = 'api'\n"})
    # What a run killed while its new integration worktree was being filled leaves: the worktree
    # made without a checkout, part of its files written (one not as the base has it), no index.
    wt = ctx.integration_worktree
    git(ctx.repo, "worktree", "add", "-q", "--no-checkout", "-b", ctx.integration_branch, str(wt), base)
    record_tip(ctx)
    (wt / "README.md").write_text("half-written\n")
    (ctx.runs_dir / "integration-files.json").write_text(json.dumps({"at": None}))

    result = integrate(ctx, base)

    assert result.ok and {s.status for s in result.steps} == {"merged"}
    assert (wt / "README.md").read_text() == "# shop\n" and (wt / "api/impl.py").read_text() == "NAME = 'api'\n"
    assert gitops.head(wt) == result.final_sha and not gitchanges.has_changes(wt)
    assert not (ctx.runs_dir / "integration-files.json").exists()


def test_a_merge_driver_planted_in_the_config_does_not_run_in_merge_tree(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path, extra={"app/settings.py": "".join(f"S{n} = {n}\n" for n in range(20))})
    gitops.trust_config(ctx.repo)  # the start of a run: what the config holds now is the user's
    ran = tmp_path / "driver-ran"
    common = gitops.common_dir(ctx.repo)
    git(ctx.repo, "config", "merge.planted.driver", f"touch {ran}; cp %B %A")
    (common / "info").mkdir(exist_ok=True)
    (common / "info" / "attributes").write_text("*.py merge=planted\n")
    lines = [f"S{n} = {n}\n" for n in range(20)]
    commit_cluster(ctx, "api", {"app/settings.py": "".join(["S0 = 'api'\n", *lines[1:]])})
    commit_cluster(ctx, "ui", {"app/settings.py": "".join([*lines[:19], "S19 = 'ui'\n"])})
    tips = [gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.branch(n)}") or "" for n in ("api", "ui")]
    # Plain git runs the planted driver for a file both sides changed: the test can fail.
    subprocess.run(["git", "merge-tree", "--write-tree", *tips], cwd=ctx.repo, capture_output=True, check=False)
    assert ran.exists()
    ran.unlink()

    result = integrate(ctx, base)

    assert result.ok and not ran.exists()
    settings = (ctx.integration_worktree / "app/settings.py").read_text()
    assert settings.startswith("S0 = 'api'\n") and settings.endswith("S19 = 'ui'\n")


def test_a_merge_after_a_branch_changed_the_attributes_is_computed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notes = [f"note {n}\n" for n in range(10)]
    ctx, base = setup(tmp_path, extra={"app/notes.txt": "".join(notes)})
    commit_cluster(ctx, "api", {".gitattributes": "app/notes.txt merge=binary\n", "api/impl.py": "NAME = 'api'\n"})
    commit_cluster(ctx, "ui", {"app/notes.txt": "".join(["note 0 by ui\n", *notes[1:]])})
    commit_cluster(ctx, "db", {"app/notes.txt": "".join([*notes[:9], "note 9 by db\n"])})
    merge_trees = _counting_merge_trees(monkeypatch)

    result = integrate(ctx, base)

    # Predicted without api's attributes, db's merge is clean; with them (a binary merge of a file
    # both sides changed) git stops on it, and so do we: its predicted commit is not taken.
    assert result.preflight is not None and result.preflight.conflict_count == 0
    assert [s.status for s in result.steps[:2]] == ["merged", "merged"]
    assert result.steps[2].status != "merged" and result.steps[2].conflicts == ["app/notes.txt"]
    assert len(merge_trees) > 3  # the merges after api were computed again


def test_a_repository_that_signs_gets_signed_merges_and_never_a_planted_signing_program(tmp_path: Path) -> None:
    """The user signs commits (``commit.gpgSign``, an SSH key). Our merges are written by
    ``commit-tree``, which reads no ``commit.gpgSign``: they must be signed as ``git merge`` signs
    them, with the user's key, and a signing program planted after the run began must not run."""
    key = tmp_path / "signing-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wc-test", "-f", str(key)], check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text("* " + key.with_suffix(".pub").read_text())
    ctx, base = setup(tmp_path, config={"gpg.format": "ssh", "user.signingKey": str(key), "commit.gpgSign": "true",
                                        "gpg.ssh.allowedSignersFile": str(signers)})
    containment.begin(ctx)  # the run's start: the user's config trusted, signing on
    for name in ("api", "ui", "db"):
        add_to_registry(ctx, name)
    ran = tmp_path / "planted-ran"
    planted = tmp_path / "planted.sh"
    planted.write_text(f"#!/bin/sh\ntouch {ran}\nexec ssh-keygen \"$@\"\n")
    planted.chmod(0o755)
    git(ctx.repo, "config", "gpg.ssh.program", str(planted))  # as an agent would, after the run began
    result = integrate(ctx, base)
    assert result.ok and [s.status for s in result.steps] == ["merged"] * 3
    assert not ran.exists()
    merges = git(ctx.repo, "-c", "gpg.ssh.program=ssh-keygen", "log", "--merges", "--format=%G? %s",  # verifies
                 f"{base}..{ctx.integration_branch}").splitlines()
    # the base commit with the plan and contracts, written before any agent ran
    assert git(ctx.repo, "-c", "gpg.ssh.program=ssh-keygen", "log", "-1", "--format=%G? %s", base) \
        == "G work-clusters: plan and contracts for shop"
    assert len(merges) == 3 and all(line.startswith("G ") for line in merges), merges  # N: unsigned
