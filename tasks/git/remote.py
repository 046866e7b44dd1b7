"""A git remote between machines: what counts as one, our own full clone of it, fetch and push.

Every call goes through ``core.run`` (hardened, timed out). Credentials never reach a command
line or a URL we print: a token is handed to git in an environment variable that a small
``GIT_ASKPASS`` script echoes (``askpass_env``), and every message that may hold a URL passes
``scrub`` (a URL's ``user:password@`` part is cut), git's own errors included.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from prefect_work_clusters.tasks.git import core, history

# scheme://user:secret@host  and the scp form  user@host:path  (a user name alone is no secret,
# but it is cut too: one rule, nothing to judge).
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SCP = re.compile(r"^[^/\s:@]+@[^/\s:]+:")
TOKEN_VAR = "WC_GIT_TOKEN"
USER_VAR = "WC_GIT_USERNAME"
# The helper reads the token from its environment when git asks: never from argv or a file.
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "${WC_GIT_USERNAME:-x-access-token}" ;;
  *) printf '%s\\n' "$WC_GIT_TOKEN" ;;
esac
"""


def scrub(text: str) -> str:
    """``text`` with the user-info part of every URL in it removed.

    >>> scrub("fetch https://bot:s3cret@example.com/a.git failed")
    'fetch https://example.com/a.git failed'
    """
    return _USERINFO.sub(r"\g<scheme>", text)


def is_remote(repo: str) -> bool:
    """Whether ``repo`` names a remote to clone rather than a working repository to work in:
    a URL (``https://``, ``ssh://``, ``file://``, ``git@host:path``) or a local bare repository.
    A local non-bare repository (or any other path) is local mode, as always."""
    if "://" in repo or _SCP.match(repo):
        return True
    path = Path(repo).expanduser()
    if not path.is_dir() or core.is_git_repo(path):
        return False
    res = core.run(path, "rev-parse", "--is-bare-repository", check=False)
    return res.status == 0 and res.stdout.strip() == "true"


def name_of(url: str) -> str:
    """A folder name for the clone: the repository's name and a hash of its address (two remotes
    called ``app`` never share a clone)."""
    stem = re.sub(r"\.git$", "", scrub(url).rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]) or "repo"
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", stem).lstrip(".") or "repo"
    return f"{stem}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


@contextmanager
def askpass_env(token: str | None, username: str | None = None) -> Iterator[dict[str, str]]:
    """The environment additions for git calls that talk to the remote: with a token, an askpass
    script (in a private temp dir, removed after) that prints it from ``WC_GIT_TOKEN``."""
    if not token:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="wc-askpass-") as tmp:
        helper = Path(tmp) / "askpass.sh"
        helper.write_text(_ASKPASS)
        helper.chmod(stat.S_IRWXU)
        env = {"GIT_ASKPASS": str(helper), TOKEN_VAR: token}
        if username:
            env[USER_VAR] = username
        yield env


def _run(cwd: Path, *args: str, env: Mapping[str, str], check: bool = True) -> core.Result:
    """``core.run`` with every word of git's answer and of the error scrubbed."""
    res = core.run(cwd, *args, env=env, check=False)
    res = core.Result(res.status, scrub(res.stdout), scrub(res.stderr))
    if check and res.status != 0:
        raise core.GitError([scrub(a) for a in args], res.status, res.stderr or res.stdout)
    return res


def sync_clone(url: str, dest: Path, env: Mapping[str, str]) -> bool:
    """Our clone of ``url`` at ``dest`` with full history (merge bases, rerere and pushes need it):
    cloned when missing, fetched when there (a run resumes in it). Returns whether it was cloned.
    A folder there that is not a clone of ``url`` is refused, never overwritten."""
    if (dest / ".git").exists():
        have = core.run(dest, "config", "--get", "remote.origin.url", check=False).stdout.strip()
        if have != url:
            raise core.GitError(["clone", scrub(url)], 1, f"{dest} is a clone of {scrub(have) or 'something else'}, "
                                f"not of {scrub(url)}; pass another --workspace")
        _run(dest, "fetch", "--quiet", "--prune", "--tags", "origin", env=env)
        _run(dest, "remote", "set-head", "origin", "--auto", env=env, check=False)
        return False
    if dest.exists() and any(dest.iterdir()):
        raise core.GitError(["clone", scrub(url)], 1, f"{dest} exists and is not a clone; pass another --workspace")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run(dest.parent, "clone", "--quiet", "--no-checkout", "--origin", "origin", "--", url, str(dest), env=env)
    return True


def default_branch(clone: Path) -> str | None:
    """The remote's default branch (``origin/HEAD``), or None for an empty remote."""
    res = core.run(clone, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD", check=False)
    return res.stdout.strip().removeprefix("origin/") or None if res.status == 0 else None


def check_out(clone: Path, ref: str) -> str:
    """Put the clone's own checkout at ``ref``: a branch of the remote becomes the local branch of
    that name, reset to the remote's (the clone is ours alone); anything else is checked out
    detached. Returns the commit."""
    if core.resolve_ref(clone, f"refs/remotes/origin/{ref}"):
        core.run(clone, "checkout", "--quiet", "--force", "-B", ref, f"refs/remotes/origin/{ref}")
    else:
        core.run(clone, "checkout", "--quiet", "--force", "--detach", ref)
    return core.head(clone)


def adopt(clone: Path, branches: list[str], checked_out: Mapping[str, Path] | None = None) -> list[str]:
    """Bring each local branch up to the remote's (``refs/remotes/origin/<branch>``, fetched):
    created where missing, fast-forwarded where behind (in its worktree, if one has it checked
    out). A branch that went its own way is kept; the returned notes say which."""
    notes = []
    for branch in branches:
        theirs = core.resolve_ref(clone, f"refs/remotes/origin/{branch}")
        ours = core.resolve_ref(clone, f"refs/heads/{branch}")
        if theirs is None or ours == theirs:
            continue
        if ours is not None and not core.is_ancestor(clone, ours, theirs):
            if not core.is_ancestor(clone, theirs, ours):
                notes.append(f"{branch}: the remote's and this clone's diverged; kept this clone's")
            continue
        where = (checked_out or {}).get(branch)
        if where is not None and os.path.isdir(where):
            core.run(where, "merge", "--ff-only", "--quiet", theirs)
        else:
            history.set_branch(clone, branch, theirs, "work-clusters: fetched from the remote")
    return notes


def fetch(clone: Path, env: Mapping[str, str]) -> None:
    """Fetch every branch of the remote (into ``refs/remotes/origin/``)."""
    _run(clone, "fetch", "--quiet", "--prune", "origin", env=env)


def push(clone: Path, refspecs: list[str], env: Mapping[str, str]) -> str | None:
    """Push ``refspecs`` (never forced: a branch that moved on the remote is refused by git);
    None when pushed, else git's reason, scrubbed."""
    res = _run(clone, "push", "--quiet", "--porcelain", "origin", *refspecs, env=env, check=False)
    if res.status == 0:
        return None
    lines = [ln for ln in (res.stdout + "\n" + res.stderr).splitlines() if ln.startswith("!") or "error" in ln]
    return "; ".join(ln.strip() for ln in lines[:4]) or res.stderr.strip()[-300:]


def delete(clone: Path, seen: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    """Delete branches on the remote, each only while it still points where we saw it (``seen``:
    branch -> commit; ``--force-with-lease`` makes the delete conditional, a branch that moved
    there meanwhile is refused); None when done, else git's reason, scrubbed."""
    leases = [f"--force-with-lease=refs/heads/{b}:{sha}" for b, sha in seen.items()]
    return push(clone, [*leases, *(f":refs/heads/{b}" for b in seen)], env) if seen else None
