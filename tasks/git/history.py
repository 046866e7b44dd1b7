"""History and branches: what a branch changed since its base, its commits and finished marker;
commits written as objects (a private index, never the user's) and branches moved, atomically
where another writer may race. Every git process through ``tasks.git.core``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

# core.run, not a copy of it: the one place every git process starts (a counter wraps it)
from prefect_work_clusters.tasks.git import core


class ChangedFiles(list[str]):
    """Files a commit changed, in git's order; ``symlinks``: those that are a symlink in the commit,
    with the blob of each (its target), read from the same ``git diff``."""

    def __init__(self, paths: Iterable[str] = (), symlinks: Mapping[str, str] | None = None) -> None:
        super().__init__(paths)
        self.symlinks = dict(symlinks or {})


def changed_files(repo: Path, base: str, head: str) -> ChangedFiles:
    """Files ``head`` changed since it left ``base``; renames count as delete + add."""
    fields = core.out(repo, "diff", "--raw", "--no-abbrev", "--no-renames", "-z", f"{base}...{head}").split("\0")
    found = ChangedFiles()
    # --raw -z: ":<old mode> <new mode> <old blob> <new blob> <status>" NUL <path> NUL, per file.
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not path:
            continue
        found.append(path)
        parts = meta.split()
        if len(parts) == 5 and parts[1] == "120000":
            found.symlinks[path] = parts[3]
    return found


def changed_in_worktree(worktree: Path, base: str) -> list[str]:
    """Tracked files whose content in the worktree (committed or not) differs from ``base``.
    Untracked files (a tool's caches, a profile's output) do not count."""
    text = core.out(worktree, "diff", "--name-only", "--no-renames", "-z", base, "--")
    return [p for p in text.split("\0") if p]


def commits(repo: Path, base: str, head: str) -> list[tuple[str, str]]:
    """(sha, subject) of each commit in base..head, oldest first."""
    text = core.out(repo, "log", "--reverse", "--format=%H%x09%s", f"{base}..{head}")
    return [tuple(line.split("\t", 1)) for line in text.splitlines() if line]  # type: ignore[misc]


def finished_commit(repo: Path, base: str, head: str) -> str | None:
    """The newest commit in base..head that marks a finished agent, if any."""
    text = core.out(repo, "log", "--format=%H", f"--grep=^{core.FINISHED_TRAILER}:", f"{base}..{head}")
    return text.splitlines()[0] if text else None


def tree_files(repo: Path, commit: str) -> list[str]:
    """Every file path in ``commit``'s tree."""
    return [p for p in core.out(repo, "ls-tree", "-r", "--name-only", "-z", commit).split("\0") if p]


def diffstat(repo: Path, base: str, head: str) -> str:
    return core.out(repo, "diff", "--shortstat", f"{base}...{head}")


def commit_files_on(repo: Path, parent: str, files: Mapping[str, bytes], message: str,
                    reuse: str | None = None) -> str:
    """A commit of ``parent`` plus ``files`` (repo-relative path -> content), or ``parent`` itself
    when nothing differs, or ``reuse`` when that commit already is exactly this (same parent and
    tree: commit-tree would make a new SHA every second). Built with a private index: the
    user's index and tree are not touched."""
    tree = tree_with_files(repo, parent, files)
    if tree == core.out(repo, "rev-parse", f"{parent}^{{tree}}"):
        return parent
    if reuse and core.out(repo, "rev-parse", f"{reuse}^{{tree}}") == tree and \
            core.run(repo, "rev-parse", "--verify", "--quiet", f"{reuse}^1", check=False).stdout.strip() == parent:
        return reuse
    return core.out(repo, "commit-tree", tree, *core.signing(repo), "-p", parent, "-m", message,
                    env=core.identity_env(repo))


def tree_with_files(repo: Path, parent: str, files: Mapping[str, bytes]) -> str:
    """The tree of ``parent`` with ``files`` written in, built in a private index."""
    with tempfile.TemporaryDirectory(prefix="wc-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        core.run(repo, "read-tree", parent, env=env)
        for n, (rel, content) in enumerate(files.items()):
            staged = Path(tmp) / f"blob-{n}"
            staged.write_bytes(content)
            blob = core.out(repo, "hash-object", "-w", f"--path={rel}", str(staged))
            core.run(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}", env=env)
        return core.out(repo, "write-tree", env=env)


def set_branch(repo: Path, branch: str, sha: str, reason: str) -> None:
    core.run(repo, "update-ref", "-m", reason, f"refs/heads/{branch}", sha)


def move_branch(repo: Path, branch: str, sha: str, expected: str, reason: str) -> None:
    """Point ``branch`` at ``sha`` only if it is still at ``expected`` (git checks and moves it
    atomically): a move made meanwhile by anyone else fails the call instead of being lost."""
    core.run(repo, "update-ref", "-m", reason, f"refs/heads/{branch}", sha, expected)


def delete_branch(repo: Path, branch: str) -> None:
    core.run(repo, "branch", "-D", "--", branch)
