"""A worktree's changes: what is in it besides its commit, staging and committing what an agent
left (its scratch files and the untracked files that were there before it excluded), and going back
to a commit. Every git process through ``tasks.git.core``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from prefect_work_clusters.tasks.git import (
    core,  # called as core.run: one place every git process starts (and is counted)
)


def has_changes(worktree: Path) -> bool:
    return bool(core.out(worktree, "status", "--porcelain", "--untracked-files=all"))


def untracked(worktree: Path) -> set[str]:
    """Untracked files git does not ignore: what an agent adds, or a verify command leaves."""
    return {p for p in core.out(worktree, "ls-files", "--others", "--exclude-standard", "-z").split("\0") if p}


def written(worktree: Path) -> list[str]:
    """Every path that differs from the worktree's index and HEAD: edits, untracked files, and
    ignored ones too (a ``conftest.py`` under an ignored folder runs in a verify command all the same)."""
    # Not stripped: an entry starts with its two status letters, a space among them.
    listed = core.run(worktree, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored",
                      "--no-renames").stdout.split("\0")
    return sorted({item[3:] for item in listed if item})


def tracked_changes(worktree: Path) -> bool:
    """Edits to tracked files, staged or not. Untracked files do not count: a merge never loses
    them (git refuses to overwrite one), and verify commands leave such files behind."""
    return bool(core.out(worktree, "status", "--porcelain", "--untracked-files=no"))


def stage_all(worktree: Path, exclude: Sequence[str] = (), keep: Iterable[str] = (),
              ignores: Sequence[Path] | None = None) -> None:
    """Stage everything an agent left (edits, new files, deletions) but the tool's scratch files
    (``exclude``, globs) and the untracked files that were there before it ran (``keep``).
    With ``ignores`` (the exclude files we trust, besides the ``.gitignore`` files): a file that
    only another ignore rule hides (an ``info/exclude`` an agent planted) is staged too."""
    kept = sorted(keep)
    excluded = [*(f":(exclude,glob){p}" for p in exclude), *(f":(exclude,literal){p}" for p in kept)]
    core.run(worktree, "add", "-A", "--", ".", *excluded)
    if ignores is None:
        return
    trusted = core.out(worktree, "ls-files", "--others", "-z", "--exclude-per-directory=.gitignore",
                  *(f"--exclude-from={f}" for f in ignores if f.is_file()))
    hidden = sorted({p for p in trusted.split("\0") if p} - set(kept))
    if hidden:
        core.run(worktree, "add", "-f", "--", *(f":(literal){p}" for p in hidden), *excluded)


def commit_staged(worktree: Path, message: str) -> bool:
    """Commit the index; whether there was anything staged to commit. The new SHA is not read
    back (a git process each commit): ``head`` it, or read the branch's ref, when needed. The
    commit is tried first: only when git refuses is it asked whether the index held nothing."""
    res = core.run(worktree, "commit", "--no-verify", "-q", "-m", message, env=core.identity_env(worktree),
                   check=False)
    if res.status == 0:
        return True
    if core.run(worktree, "diff", "--cached", "--quiet", check=False).status == 0:
        return False  # nothing staged: git's "nothing to commit"
    raise core.GitError(["commit", "-m", message], res.status, res.stderr or res.stdout)


def commit_all(worktree: Path, message: str, exclude: Sequence[str] = (), keep: Iterable[str] = (),
               ignores: Sequence[Path] | None = None) -> bool:
    """Stage everything the agent left (``stage_all``) and commit it; whether a commit was made."""
    stage_all(worktree, exclude, keep, ignores)
    return commit_staged(worktree, message)


def commit_empty(worktree: Path, message: str) -> None:
    """A commit that changes no file (the finished marker); its SHA is not read back."""
    core.run(worktree, "commit", "--no-verify", "--allow-empty", "-q", "-m", message, env=core.identity_env(worktree))


def reset_to(worktree: Path, sha: str, keep: Iterable[str] | None = None) -> None:
    """Back to ``sha``: the merge state and tracked edits are dropped. With ``keep`` (the untracked
    files there before), untracked files that appeared since are deleted too; the files in
    ``keep`` are not ours to delete."""
    core.run(worktree, "reset", "-q", "--hard", sha)
    if keep is None:
        return
    new = sorted(untracked(worktree) - set(keep))
    if new:
        core.run(worktree, "clean", "-fq", "--", *(f":(literal){p}" for p in new))


def unmerged_files(worktree: Path) -> list[str]:
    text = core.out(worktree, "diff", "--name-only", "--diff-filter=U", "-z")
    return [p for p in text.split("\0") if p]


def merge_in_progress(worktree: Path) -> bool:
    return core.run(worktree, "rev-parse", "--verify", "--quiet", "MERGE_HEAD", check=False).status == 0
