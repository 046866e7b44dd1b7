"""The git side of integration: conflict prediction, merges with rerere, marker checks, blobs
(the mergiraf driver is in ``mergiraf``).

Split from ``core`` (which holds repository facts and commits) to keep both small;
every call still goes through ``gitops.run``, so the environment rules hold here too. Options
that change git's behaviour are passed with ``-c`` on our own commands only: the user's config
is never written.

This module imports nothing of ours but ``gitops``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git.core import GitError
from prefect_work_clusters.tasks.git.files import WHOLE_INDEX, git_link

# rerere replays a resolution recorded for the same conflict earlier; autoupdate stages it. It is
# enabled for our merges and commits only, never in the user's config.
RERERE = ("-c", "rerere.enabled=true", "-c", "rerere.autoupdate=true")
# diff3 shows the base between the sides, which the additive resolver needs to judge a hunk.
DIFF3 = ("-c", "merge.conflictStyle=diff3")
_REPLAYED = re.compile(r"^(?:Staged|Resolved) '(.+)' using previous resolution\.$", re.M)
_MARKER = re.compile(r"^(.+):(\d+): leftover conflict marker$", re.M)


def contained_commits(repo: Path, commit: str, commits: Sequence[str]) -> set[str]:
    """Which of ``commits`` (SHAs) are already contained in ``commit``, in one git process: what
    ``rev-list <commits> --not <commit>`` lists is exactly what ``commit`` does not contain, and a
    commit always lists itself unless it is contained (one ``merge-base --is-ancestor`` each took
    100 processes for 100 clusters)."""
    wanted = set(commits)
    if not wanted:
        return set()
    listed = gitops.run(repo, "rev-list", "--stdin", stdin="".join(f"{c}\n" for c in wanted) + f"^{commit}\n")
    return wanted - set(listed.stdout.split())


def merged_by(repo: Path, head: str, commit: str) -> str | None:
    """The commit on ``head``'s first-parent line that brought ``commit`` in (the merge of its
    cluster), or None when ``commit`` is not in ``head``."""
    line = gitops.out(repo, "rev-list", "--first-parent", "--ancestry-path", f"{commit}..{head}").split()
    return line[-1] if line else (head if head == commit else None)


def contained(repo: Path, commit: str, branches: Sequence[str]) -> set[str]:
    """Which of ``branches`` are already contained in ``commit``: one call for all of them."""
    if not branches:
        return set()
    text = gitops.out(repo, "for-each-ref", f"--merged={commit}", "--format=%(refname)",
                      *(f"refs/heads/{b}" for b in branches))
    return {line.removeprefix("refs/heads/") for line in text.splitlines()} & set(branches)


@dataclass
class Prediction:
    """What ``git merge-tree --write-tree`` says merging two commits would give."""

    tree: str
    conflicts: dict[str, list[str]] = field(default_factory=dict)  # path -> kinds ("contents", ...)
    clean: bool = True  # git would commit the merge as is


def merge_tree(repo: Path, ours: str, theirs: str) -> Prediction:
    """Predict the merge of ``theirs`` into ``ours`` without touching any worktree or index."""
    # diff3, as our merges use: git then merges less eagerly (xdiff caps the level at "eager"), so
    # a hunk both sides changed is a conflict here exactly when ``git merge`` would stop on it.
    res = gitops.run(repo, *DIFF3, "merge-tree", "--write-tree", "-z", "--name-only", ours, theirs, check=False)
    if res.status not in (0, 1):
        raise GitError(["merge-tree", "--write-tree", ours, theirs], res.status, res.stderr or res.stdout)
    fields = res.stdout.split("\0")
    pred = Prediction(tree=fields[0].strip(), clean=res.status == 0)
    if res.status == 0:
        return pred
    i = 1
    while i < len(fields) and fields[i]:
        pred.conflicts.setdefault(fields[i], [])
        i += 1
    i += 1
    # Messages come as: <count> NUL <path>... NUL <type> NUL <message> NUL (git-merge-tree(1), -z).
    while i < len(fields) and fields[i].isdigit():
        n = int(fields[i])
        paths, kind = fields[i + 1:i + 1 + n], fields[i + 1 + n] if i + 1 + n < len(fields) else ""
        if kind.startswith("CONFLICT"):
            label = kind.removeprefix("CONFLICT").strip(" ()")
            for path in paths:
                if path in pred.conflicts and label not in pred.conflicts[path]:
                    pred.conflicts[path].append(label)
        i += n + 3
    return pred


def commit_tree(repo: Path, tree: str, parents: Sequence[str], message: str) -> str:
    """A commit object (no ref points at it) so the next prediction can build on this one."""
    args = [a for p in parents for a in ("-p", p)]
    return gitops.out(repo, "commit-tree", tree, *gitops.signing(repo), *args, "-m", message,
                      env=gitops.identity_env(repo))


def merge_commit(worktree: Path, ours: str, theirs: str, message: str) -> str | None:
    """The merge of ``theirs`` into ``ours`` as a commit object with the parents and message
    ``git merge --no-ff`` would give it, or None when git would stop on a conflict. No index, file
    or ref is touched, so it costs the changed paths, not the tree (``git merge`` in a 100,000-file
    worktree: ~0.27 s). Run in the integration ``worktree`` so git reads the attributes that
    ``git merge`` there would (a ``merge=`` driver, a marker size); a driver planted in the config
    is overridden as in every git call of ours."""
    pred = merge_tree(worktree, ours, theirs)
    if not pred.clean:
        return None
    return commit_tree(worktree, pred.tree, [ours, theirs], message)


def catch_up(worktree: Path, files_at: str | None, to: str = "HEAD", *, idle: bool = False) -> str | None:
    """Bring the worktree's index and files, which hold ``files_at``, to ``to`` (its HEAD), touching
    only the paths that differ; git's message when it refuses (an untracked file in the way, an
    edit it would lose), with nothing changed. ``files_at`` None: a worktree of ours never checked
    out, whose index and files are written whole (what a fill stopped half-way left is replaced);
    ``idle``: at the lowest CPU priority."""
    if files_at is not None:
        res = gitops.run(worktree, *gitops.PARALLEL_CHECKOUT, "read-tree", "-m", "-u", files_at, to, check=False)
    else:  # into an index of its own (``files.WHOLE_INDEX``), made anew, moved over the worktree's once whole
        link = git_link(str(worktree))
        admin = os.path.join(worktree, link) if link else None  # relative to the worktree, when written so
        private = os.path.join(admin, WHOLE_INDEX) if admin else None
        if private:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(private)  # what a write stopped half-way left
        res = gitops.run(worktree, *gitops.PARALLEL_CHECKOUT, "read-tree", "--reset", "-u", to, check=False,
                         env={"GIT_INDEX_FILE": private} if private else None, idle=idle)
        if res.status == 0 and admin and private:
            os.replace(private, os.path.join(admin, "index"))
    return None if res.status == 0 else (res.stderr or res.stdout).strip() or "git read-tree failed"


@dataclass
class MergeStart:
    committed: bool  # the merge went through cleanly and is committed
    unmerged: list[str]  # paths git left conflicted
    replayed: list[str]  # paths rerere resolved from an earlier recorded resolution
    output: str


def start_merge(worktree: Path, branch: str, message: str) -> MergeStart:
    """``git merge --no-ff`` with rerere and diff3 for this command only. Its exit status is not
    the verdict (rerere leaves it at 1 even when it resolved everything): the unmerged paths are."""
    res = gitops.run(worktree, *RERERE, *DIFF3, "merge", "--no-ff", "--no-edit", "-m", message, "--", branch,
                     env=gitops.identity_env(worktree), check=False)
    output = (res.stdout + res.stderr).strip()
    if res.status == 0:
        return MergeStart(committed=True, unmerged=[], replayed=[], output=output)
    if not gitchanges.merge_in_progress(worktree):
        raise GitError(["merge", "--no-ff", branch], res.status, output)
    return MergeStart(committed=False, unmerged=gitchanges.unmerged_files(worktree),
                      replayed=sorted(set(_REPLAYED.findall(output))), output=output)


def stage(worktree: Path, paths: Sequence[str]) -> None:
    """Mark paths resolved; ``-A`` also records a deletion (a modify/delete resolved by removal)."""
    if paths:
        gitops.run(worktree, "add", "-A", "--", *paths)


def commit_merge(worktree: Path) -> str:
    """Conclude the merge with the message given when it started; rerere records the resolution
    so the same conflict resolves itself the next time it appears."""
    gitops.run(worktree, "-c", "rerere.enabled=true", "commit", "--no-edit", "--no-verify", "-q",
               env=gitops.identity_env(worktree))
    return gitops.head(worktree)


def restore_conflict(worktree: Path, paths: Sequence[str]) -> None:
    """Put the conflicted content (diff3 markers) back from the index stages, undoing a rejected
    resolution. Only valid while the paths are still unmerged in the index."""
    if paths:
        gitops.run(worktree, "checkout", "--conflict=diff3", "--", *paths)


def marker_lines(worktree: Path, since: str, paths: Sequence[str] = ()) -> dict[str, list[int]]:
    """Lines that ``git diff --check`` calls leftover conflict markers, worktree against ``since``.
    Whitespace complaints are ignored: they are the clusters' style, not a failed resolution."""
    res = gitops.run(worktree, "diff", "--check", "--no-ext-diff", since, "--", *paths, check=False)
    found: dict[str, list[int]] = {}
    for path, line in _MARKER.findall(res.stdout):
        found.setdefault(path, []).append(int(line))
    return found


def show_blob(repo: Path, commit: str, path: str) -> str | None:
    """The text of ``path`` at ``commit``, or None when it does not exist there."""
    res = gitops.run(repo, "cat-file", "blob", f"{commit}:{path}", check=False)
    return res.stdout if res.status == 0 else None


def _unquote(path: str) -> str:
    """A path as git prints it in diff headers: C-quoted when it holds unusual bytes."""
    if not path.startswith('"'):
        return path
    raw = path[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return raw.encode("latin-1").decode("utf-8", "replace")


@dataclass
class FileChange:
    """The lines a diff added and removed in one file (a rename counts as delete + add)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def changed_lines(repo: Path, base: str, head: str, since_fork: bool = True) -> dict[str, FileChange]:
    """The lines ``head`` added and removed per file: since it left ``base`` (``base...head``),
    or against ``base`` itself when ``since_fork`` is false. Binary files hold no lines."""
    spec = f"{base}...{head}" if since_fork else f"{base}..{head}"
    text = gitops.out(repo, "diff", "--no-renames", "--no-color", "--no-ext-diff", "--no-textconv", "-U0",
                      "--src-prefix=a/", "--dst-prefix=b/", spec)
    found: dict[str, FileChange] = {}
    old = new = ""
    current: FileChange | None = None
    for line in text.splitlines():
        if line.startswith("diff --git "):
            current, old, new = None, "", ""
        elif current is None and line.startswith("--- "):
            old = "" if line[4:] == "/dev/null" else _unquote(line[4:])[2:]
        elif current is None and line.startswith("+++ "):
            new = "" if line[4:] == "/dev/null" else _unquote(line[4:])[2:]
        elif line.startswith("@@"):
            if current is None:  # a header's ``---``/``+++`` lines end before the first hunk
                current = found.setdefault(new or old, FileChange())
        elif current is not None and line[:1] == "+":
            current.added.append(line[1:])
        elif current is not None and line[:1] == "-":
            current.removed.append(line[1:])
    return found


def read_blobs(repo: Path, specs: Sequence[str]) -> dict[str, str | None]:
    """The text of each ``<commit>:<path>`` in one ``git cat-file --batch`` (None when missing)."""
    if not specs:
        return {}
    res = gitops.run(repo, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in specs))
    data = res.stdout.encode("utf-8", "surrogateescape")  # sizes are in bytes: undo the decoding
    found: dict[str, str | None] = {}
    pos = 0
    for spec in specs:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        pos = end + 1
        if len(header) < 3 or header[1] != b"blob":
            found[spec] = None
            if len(header) == 3:  # a tree or a commit: skip its content
                pos += int(header[2]) + 1
            continue
        size = int(header[2])
        found[spec] = data[pos:pos + size].decode("utf-8", "replace")
        pos += size + 1
    return found


def parents(repo: Path, rev: str) -> list[str]:
    return gitops.out(repo, "rev-list", "--parents", "-n", "1", rev).split()[1:]
