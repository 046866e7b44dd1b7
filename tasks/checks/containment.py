"""Containment: what an agent (or a verify command, ``worktree.setup``, the integration agent) may
not change in the shared git dir, in another cluster's worktree, or in the user's checkout.

One ``Watch`` per run (``begin``) holds the trusted state of the shared git dir
(``tasks.git.gitdir``) and records which windows are open: each cluster attempt (setup, agent,
leftover commit, verify) and each integration agent call is a window (``window``). The state is
compared when a window opens and when it closes; a change is restored at once.

Attribution with agents in parallel: a change is blamed on a window only when that window was
the only one open since the last clean comparison (every open and close compares, so that span
is short). Otherwise nobody can tell which agent made it without an OS sandbox: it is restored
and reported in the run's notes with the windows that were open, and no cluster fails for it,
so an honest cluster is never failed for another's tampering. A change with no window open is
the user's own (adopted and reported, never undone).

What may change: a running window's own branch and its own worktree's admin dir; another plan's
``clusters/`` branches (its own run watches them); the user's side (remote-tracking refs, the
stash, branches checked out in a worktree of the user's, refs created outside ``refs/replace/``
and ``clusters/<plan>/``, as ``tasks.checks.user_side`` tells them): reported as "changed while
agents ran: by you or by an agent", never undone. Everything else in the snapshot is restored.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prefect_work_clusters.tasks.checks import worktree_writes
from prefect_work_clusters.tasks.checks.user_side import (
    USER_SIDE,
    CheckoutState,
    checked_out_by_user,
    user_movable,
    user_state,
)
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import events, gitdir
from prefect_work_clusters.tasks.git import refs as gitrefs

FINISH_WORKERS = 4
INTEGRATION = "integration"


@dataclass
class Window:
    """One open window; ``tampering`` lists what was blamed on it (restored already); ``settled``:
    compared after the last untrusted process in it ended, so closing needs no comparison."""

    label: str
    tampering: list[str] = field(default_factory=list)
    settled: bool = False


@dataclass
class Watch:
    ctx: RunContext
    trusted: gitdir.GitDirState
    user_before: CheckoutState
    running: dict[str, int] = field(default_factory=dict)
    since_check: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    untracked: dict[str, set[str]] = field(default_factory=dict)  # files a cluster's worktree may hold
    lock: threading.Lock = field(default_factory=threading.Lock)
    labels_seen: tuple[tuple[int, int, int], dict[str, str]] | None = None
    ignores: list[Path] = field(default_factory=list)

    def labels(self) -> dict[str, str]:
        """Admin dir name -> window label, for this plan's worktrees; read again only when the
        ``worktrees/`` folder changed (a worktree added or removed)."""
        admin_root = gitops.common_dir(self.ctx.repo) / "worktrees"
        try:
            st = admin_root.stat()
            stamp: tuple[int, int, int] | None = (st.st_ctime_ns, st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = None
        if stamp is not None and self.labels_seen is not None and self.labels_seen[0] == stamp:
            return self.labels_seen[1]
        places = {str(self.ctx.worktree(c.name)): c.name for c in self.ctx.plan.clusters}
        places[str(self.ctx.integration_worktree)] = INTEGRATION
        found: dict[str, str] = {}
        for admin in admin_root.iterdir() if admin_root.is_dir() else []:
            try:
                dotgit = (admin / "gitdir").read_text().strip()
            except OSError:
                continue
            label = places.get(os.path.dirname(dotgit))
            if label:
                found[admin.name] = label
        self.labels_seen = (stamp, found) if stamp is not None else None
        return found


_WATCHES: dict[tuple[str, str], Watch] = {}
_WATCHES_LOCK = threading.Lock()


def begin(ctx: RunContext, fresh: bool = False,
          checkout: Future[CheckoutState] | None = None) -> Watch:
    """The run's watch; started (the config's commands trusted, the git dir snapshotted) when there
    is none yet, or with ``fresh`` (the flow, before the first agent: a watch a crashed earlier
    run left in this process must not speak for this one). ``checkout``: your checkout's status
    as ``user_side.read_checkout`` began to read it, else read now."""
    key = (str(ctx.repo), ctx.plan.name)
    with _WATCHES_LOCK:
        if key in _WATCHES and not fresh:
            return _WATCHES[key]
    # Your checkout's status beside our own reading of the git dir.
    with ThreadPoolExecutor(max_workers=1) as pool:
        user = checkout or pool.submit(user_state, ctx.repo)
        gitops.trust_config(ctx.repo)
        watch = Watch(ctx=ctx, trusted=gitdir.GitDirState(), user_before={})
        watch.trusted = gitdir.snapshot(ctx.repo, watch.labels())
        watch.user_before = user.result()
    exclude = watch.trusted.files.get(os.path.join("info", "exclude"))
    _trusted_exclude(ctx).parent.mkdir(parents=True, exist_ok=True)
    _trusted_exclude(ctx).write_bytes(exclude[1] if exclude and isinstance(exclude[1], bytes) else b"")
    configured = gitops.run(ctx.repo, "config", "--path", "core.excludesFile", check=False).stdout.strip()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "git" / "ignore"
    watch.ignores = [_trusted_exclude(ctx), Path(configured) if configured else xdg]
    with _WATCHES_LOCK:
        if fresh:
            _WATCHES[key] = watch
        return _WATCHES.setdefault(key, watch)


def _trusted_exclude(ctx: RunContext) -> Path:
    return ctx.runs_dir / "guard" / "info-exclude"


def trusted_ignores(ctx: RunContext) -> list[Path]:
    """The exclude files our commits honour besides ``.gitignore`` files, as they were when the
    run started: a copy of the repository's ``info/exclude`` and the global excludes file. One
    an agent planted, even for the moment before it is restored, hides nothing from our commit."""
    return begin(ctx).ignores


def _check(watch: Watch, label: str | None, closing: bool) -> list[str]:
    """Compare with the trusted state, restore, report; what is blamed on ``label``. Holds the lock."""
    ctx = watch.ctx
    labels = watch.labels()
    running = set(watch.running) | ({label} if label else set())
    now = gitdir.snapshot(ctx.repo, labels)
    # An admin dir that appeared since (a worktree made by us) is adopted, not reported.
    trusted_admin = watch.trusted.admin_names()
    known = {name for name, lab in labels.items() if lab not in running and name in trusted_admin}
    own_refs = {f"refs/heads/{ctx.branch(lab)}" for lab in running if lab != INTEGRATION}
    if INTEGRATION in running:
        own_refs.add(f"refs/heads/{ctx.integration_branch}")
    # Another plan's run moves its own branches: its own watch looks after them.
    changes = [c for c in gitdir.compare(watch.trusted, now, known) if c.name not in own_refs and not (
        c.name.startswith("refs/heads/clusters/") and not c.name.startswith(f"refs/heads/{ctx.prefix}/"))]
    checked_out = checked_out_by_user(ctx) if any(c.kind == "ref" for c in changes) else set()
    user = [c for c in changes if c.kind == "ref" and user_movable(ctx, c, checked_out)]
    bad = [c for c in changes if c not in user]
    suspects = set(watch.since_check) | ({label} if label and closing else set())
    if user:
        watch.notes.append(f"{USER_SIDE}: " + "; ".join(c.describe() for c in user))
    blamed: list[str] = []
    if bad:
        listed = [c.describe() for c in bad]
        if suspects:
            gitdir.restore(ctx.repo, bad)
            now = gitdir.undone(now, bad)
        if closing and label and suspects == {label}:
            blamed = listed
        elif suspects:
            watch.notes.append(f"the shared git dir was changed while {', '.join(sorted(suspects))} ran "
                               f"(restored; which of them did it cannot be told apart): {'; '.join(listed)}")
        else:
            watch.notes.append(f"{USER_SIDE} (no agent was running, so kept): {'; '.join(listed)}")
    watch.trusted = now
    watch.since_check = set(watch.running)
    return blamed


def remember_worktree(ctx: RunContext, cluster: str, worktree: Path) -> None:
    """After a cluster's attempt: the untracked files its worktree holds are its own."""
    watch = begin(ctx)
    files = gitchanges.untracked(worktree)
    with watch.lock:
        watch.untracked[cluster] = files


@contextmanager
def window(ctx: RunContext, label: str, worktree: Path | None = None) -> Iterator[Window]:
    """An attempt of ``label`` (a cluster, or ``integration``): compared when it opens (changes
    so far are others') and when it closes; ``Window.tampering`` lists what is blamed on it."""
    watch, win = begin(ctx), Window(label)
    with watch.lock:
        _check(watch, label, closing=False)
        watch.running[label] = watch.running.get(label, 0) + 1
        watch.since_check.add(label)
    if worktree is not None:
        note = worktree_writes.written(watch.untracked.get(label), label, worktree, "while its agent was not running")
        if note:
            with watch.lock:
                watch.notes.append(note)
    try:
        yield win
    finally:
        with watch.lock:
            if win.settled:
                _adopt_own(watch, label)
            else:
                win.tampering += _check(watch, label, closing=True)
            watch.running[label] -= 1
            if not watch.running[label]:
                del watch.running[label]
            watch.since_check = set(watch.running)


def _adopt_own(watch: Watch, label: str) -> None:
    """What our own git did in a settled window after its last comparison (the finished commit,
    its COMMIT_EDITMSG) becomes trusted: the window's own branch and admin dir, read alone."""
    ctx = watch.ctx
    names = {name for name, lab in watch.labels().items() if lab == label}
    prefixes = tuple(os.path.join("worktrees", name) + os.sep for name in names)
    files = {rel: c for rel, c in watch.trusted.files.items() if not rel.startswith(prefixes)}
    files.update(gitdir.admin_files(ctx.repo, names))
    ref = f"refs/heads/{ctx.integration_branch if label == INTEGRATION else ctx.branch(label)}"
    refs = dict(watch.trusted.refs)
    tip = gitrefs.read(ctx.repo).get(ref)
    if tip:
        refs[ref] = tip
    else:
        refs.pop(ref, None)
    watch.trusted = gitdir.GitDirState(files=files, refs=refs)


def check_now(ctx: RunContext, win: Window, last: bool = False) -> list[str]:
    """A comparison inside an open window (after the agent, before our commit; after verify).
    ``last``: nothing untrusted runs in the window any more (what follows is our own git), so
    its closing comparison is skipped; changes after it are the next comparison's to find."""
    watch = begin(ctx)
    with watch.lock:
        found = _check(watch, win.label, closing=True)
        watch.since_check = set(watch.running)
    win.tampering += found
    win.settled = last
    return found


def let_go(ctx: RunContext, clusters: list[str]) -> Callable[[], list[str]]:
    """Before the run deletes these clusters' worktrees, ahead of its end: no look at them after
    this one; whatever is written there from now on goes with them. Returns their last look, for
    the removal to take before they go (``tasks.git.worktrees.begin_removal``): files written
    after their agent finished, named as ``finish`` names them, its git at the lowest priority."""
    with _WATCHES_LOCK:
        watch = _WATCHES.get((str(ctx.repo), ctx.plan.name))
    if watch is None:
        return list
    with watch.lock:
        mine = {cluster: watch.untracked.pop(cluster) for cluster in clusters if cluster in watch.untracked}

    def look() -> list[str]:
        with ThreadPoolExecutor(max_workers=FINISH_WORKERS) as pool:
            return [note for note in worktree_writes.after_agents(ctx, pool, mine, idle=True) if note]
    return look


def finish(ctx: RunContext) -> list[str]:
    """After the agents and the integration: a last comparison, writes into worktrees after their
    agent finished, files changed in the user's checkout; the run's notes, once."""
    key = (str(ctx.repo), ctx.plan.name)
    with _WATCHES_LOCK:
        watch = _WATCHES.pop(key, None)
    if watch is None:
        return []
    with watch.lock:
        _check(watch, None, closing=False)
    events.close(str(gitops.common_dir(ctx.repo)))
    # One git status per worktree and one of your checkout: side by side, git waits on the disk too.
    with ThreadPoolExecutor(max_workers=FINISH_WORKERS) as pool:
        user = pool.submit(user_state, ctx.repo)
        watch.notes += [note for note in worktree_writes.after_agents(ctx, pool, dict(watch.untracked)) if note]
        after = user.result()
    touched = sorted(rel for rel in set(after) | set(watch.user_before) if after.get(rel) != watch.user_before.get(rel))
    if touched:
        more = f" (+{len(touched) - 30} more)" if len(touched) > 30 else ""
        watch.notes.append(f"files in your checkout {ctx.repo} {USER_SIDE} (not reverted): "
                           f"{', '.join(touched[:30])}{more}")
    return watch.notes
