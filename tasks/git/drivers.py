"""Filters and merge drivers an agent planted never run in our git.

A filter (``filter.<name>.clean|smudge|process``) or a merge driver (``merge.<name>.driver``) is a
command git runs by itself once an attributes file names it, and an agent can write both: the
shared ``config`` (or a file it includes, or the user's global config) and ``info/attributes``
or a committed ``.gitattributes``. The commands the user's config held when the run started are
trusted (``trust``); every other one is overridden for each of our git calls with ``-c``: a
filter by empty commands (git then passes content through unchanged, ``required`` off), a merge
driver by ``git merge-file`` (git's own line merge, the one it would use with no driver), a
planted signing program by signing off.

Cheap per call: the config is read again (one git process) only when one of the files it came
from changes its stat; otherwise a call costs a few ``stat``s (measured: ``bench/bench_guard.py``).
The config is read through a callable of ``core`` so that this module starts no process itself.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# Config keys whose value is a command git runs without being asked to on the command line.
COMMAND_KEY = re.compile(r"^(filter\..+\.(clean|smudge|process)|merge\..+\.driver|gpg(\..+)?\.program)$")
MERGE_FILE = "git merge-file --marker-size=%L %A %O %B"
# git's own signing programs, put back where a planted one replaced none of the user's: a ``-S`` of
# ours (``core.signing``) then signs as the user's config would have, never with the planted one.
DEFAULT_PROGRAMS = {"gpg.program": "gpg", "gpg.openpgp.program": "gpg", "gpg.x509.program": "gpgsm",
                    "gpg.ssh.program": "ssh-keygen"}
GIT_TRUE, GIT_FALSE = {"true", "yes", "on"}, {"false", "no", "off", ""}
READS = 5  # times the config is read for one call while it keeps changing under the read

Entry = tuple[str, str]
Stamp = tuple[tuple[int, int, int] | None, ...]


def command_entries(listing: str) -> tuple[set[Entry], set[str]]:
    """The command-valued ``(key, value)`` entries of ``git config -l -z --show-origin`` output, and
    the files they all came from (command-line entries are ours and are skipped)."""
    entries: set[Entry] = set()
    origins: set[str] = set()
    fields = listing.split("\0")
    for origin, item in zip(fields[0::2], fields[1::2], strict=False):
        if not origin.startswith("file:"):
            continue
        origins.add(origin.removeprefix("file:"))
        key, _, value = item.partition("\n")
        if COMMAND_KEY.match(key):
            entries.add((key, value))
    return entries, origins


def signing_args(listing: str) -> tuple[str, ...]:
    """``-S`` with the user's ``user.signingKey`` (or git's default key) when the config in
    ``listing`` (``git config -l -z --show-origin``) signs commits (``commit.gpgSign``); else
    nothing. Command-line entries are ours and are skipped, as in ``command_entries``."""
    values: dict[str, str | None] = {}
    fields = listing.split("\0")
    for origin, item in zip(fields[0::2], fields[1::2], strict=False):
        key, sep, value = item.partition("\n")
        if origin.startswith("file:") and key in ("commit.gpgsign", "user.signingkey"):
            values[key] = value if sep else None  # a key with no value: true, for a boolean
    sign = values.get("commit.gpgsign", "false")
    if not (sign is None or sign.strip().lower() in GIT_TRUE or _nonzero(sign)):
        return ()
    signer = values.get("user.signingkey")
    return (f"-S{signer}",) if signer else ("-S",)


def _nonzero(value: str) -> bool:
    text = value.strip().lower()
    if text in GIT_FALSE:
        return False
    try:
        return int(text.rstrip("kmg")) != 0  # git's integer suffixes
    except ValueError:
        return False


def overrides_for(planted: Iterable[Entry], trusted: Iterable[Entry] = (), signs: bool = False) -> tuple[str, ...]:
    """The ``-c`` arguments that neutralise each planted command; a command of the user's that
    was changed gets the user's own back (an LFS filter must keep working in our commits). Where a
    signing program was planted, commits are signed as the user's config signed them at the start
    (``signs``), by git's own program; tags never."""
    args: dict[str, str] = {}
    own = dict(trusted)
    for key, _ in sorted(planted):
        section, _, rest = key.partition(".")
        if key in own:
            args[key] = own[key]
        elif section == "filter":  # an empty command passes content through unchanged
            name = rest.rsplit(".", 1)[0]
            args[key] = ""
            if not any(k.startswith(f"filter.{name}.") for k in own):  # a filter of the user's stays required
                args[f"filter.{name}.required"] = "false"
        elif section == "merge":
            args[key] = MERGE_FILE
        else:
            args["commit.gpgSign"], args["tag.gpgSign"] = ("true" if signs else "false"), "false"
            if key in DEFAULT_PROGRAMS:
                args[key] = DEFAULT_PROGRAMS[key]
    return tuple(arg for key, value in args.items() for arg in ("-c", f"{key}={value}"))


def _config_files(common: str) -> tuple[str, ...]:
    """The config files every git call in a repository of ``common`` reads: its own, the global
    and the XDG one (those that do not exist yet too)."""
    home = os.path.expanduser("~")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return (os.path.join(common, "config"), os.path.join(home, ".gitconfig"), os.path.join(xdg, "git", "config"))


def _stamp(files: Iterable[str]) -> Stamp:
    stamps: list[tuple[int, int, int] | None] = []
    for name in files:
        try:
            st = os.stat(name)
        except OSError:
            stamps.append(None)
            continue
        stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(stamps)


@dataclass
class _Seen:
    files: tuple[str, ...]
    stamp: Stamp
    args: tuple[str, ...]


class DriverGuard:
    """The trusted commands per shared git dir, and per working folder the overrides last computed."""

    def __init__(self) -> None:
        self._trusted: dict[str, set[Entry]] = {}
        self._signing: dict[str, tuple[str, ...]] = {}  # per shared git dir: ``signing_args`` of its config
        self._untrusted_signing: dict[str, tuple[Stamp, tuple[str, ...]]] = {}  # before ``trust``, with its stamp
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def trust(self, common: Path, listing: str) -> None:
        """Record the commands the user's config holds now (the start of a run) for ``common``."""
        entries, _ = command_entries(listing)
        with self._lock:
            self._trusted[str(common)] = entries
            self._signing[str(common)] = signing_args(listing)
            self._seen.clear()

    def signing(self, common: Path, read: Callable[[], str]) -> tuple[str, ...]:
        """``signing_args`` of ``common``'s config as trusted at the start of the run; before
        that (no agent has run: the base commit, or integration called on its own), of the
        config as ``read`` lists it, read again only when one of its files changes."""
        with self._lock:
            known = self._signing.get(str(common))
            before = self._untrusted_signing.get(str(common))
        if known is not None:
            return known
        files = _config_files(str(common))
        if before is not None and before[0] == _stamp(files):
            return before[1]
        stamp = _stamp(files)
        args = signing_args(read())
        with self._lock:
            self._untrusted_signing[str(common)] = (stamp, args)
        return args

    def active(self) -> bool:
        return bool(self._trusted)

    def args(self, cwd: str, common: Callable[[], Path | None], gitdir: str | None,
             read: Callable[[], str]) -> tuple[str, ...]:
        """The overrides for a git call in ``cwd``. ``common`` finds its shared git dir, ``gitdir``
        is its own git dir when known (for ``config.worktree``), ``read`` lists its config."""
        with self._lock:
            seen = self._seen.get(cwd)
        if seen is not None and _stamp(seen.files) == seen.stamp:
            return seen.args
        shared = common()
        with self._lock:
            trusted = self._trusted.get(str(shared)) if shared else None
            signs = bool(self._signing.get(str(shared))) if shared else False
        if trusted is None:  # not a repository under a run: asked again only once its .git changes
            dotgit = (os.path.join(cwd, ".git"),)
            with self._lock:
                self._seen[cwd] = _Seen(dotgit, _stamp(dotgit), ())
            return ()
        # Files that do not exist yet count too: an agent may create a global or worktree config.
        candidates = set(_config_files(str(shared)))
        if gitdir:
            candidates.add(os.path.join(gitdir, "config.worktree"))
        # A config written while it was read (an agent planting a filter one ``git config`` at a
        # time) is read again at once: overrides from the half-written one would let this very call
        # run the command planted after it. Still changing after a few reads: read again next call.
        for _ in range(READS):
            before = _stamp(sorted(candidates))
            entries, origins = command_entries(read())
            files = tuple(sorted(candidates | {os.path.join(cwd, o) for o in origins}))
            read_now = _Seen(files, _stamp(files), overrides_for(entries - trusted, trusted, signs))
            if _stamp(sorted(candidates)) == before:
                break
        else:
            read_now.stamp = ()
        with self._lock:
            self._seen[cwd] = read_now
        return read_now.args


GUARD = DriverGuard()
