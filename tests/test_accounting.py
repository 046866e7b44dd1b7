"""Change accounting and the Python checks on real commits: what each kind of discrepancy is,
whom it is charged to, what overlap tolerates, and what a decision explains."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.integration.accounting import Accounting, account
from prefect_work_clusters.tasks.integration.decisions import parse_decisions
from prefect_work_clusters.tasks.integration.pychecks import duplicates, findings_for
from tests.conftest import make_repo

BASE = {"notes.txt": "alpha\nbeta\ngamma\n"}


def branch(repo: Path, name: str, base: str, text: str, path: str = "notes.txt") -> tuple[str, str]:
    sha = githistory.commit_files_on(repo, base, {path: text.encode()}, name)
    githistory.set_branch(repo, f"clusters/t/{name}", sha, "test")
    return name, f"clusters/t/{name}"


def integrated(repo: Path, base: str, text: str, path: str = "notes.txt") -> str:
    return githistory.commit_files_on(repo, base, {path: text.encode()}, "integrated")


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    repo = make_repo(tmp_path, BASE)
    return repo, gitops.head(repo)


def kinds(acc: Accounting) -> list[tuple[str, list[str], list[str], int]]:
    return [(i.kind, i.by, i.lines, i.count) for i in acc.issues]


def test_each_kind_is_named_and_charged_to_the_cluster_whose_change_it_undoes(repo: tuple[Path, str]) -> None:
    path, base = repo
    x = branch(path, "x", base, "alpha\nbeta\ngamma\nx added\n")  # adds a line
    y = branch(path, "y", base, "alpha\ngamma\n")  # removes beta
    good = account(path, base, integrated(path, base, "alpha\ngamma\nx added\n"), [x, y], [])
    assert good.ok and good.issues == [] and [(c.added, c.removed) for c in good.clusters] == [(1, 0), (0, 1)]

    bad = account(path, base, integrated(path, base, "alpha\nalpha\nbeta\ngamma\n"), [x, y], [])

    assert not bad.ok
    assert kinds(bad) == [("duplicated", ["base"], ["alpha"], 1), ("resurrected", ["y"], ["beta"], 1),
                          ("lost", ["x"], ["x added"], 1)]
    assert [(c.cluster, c.lost, c.resurrected, c.duplicated) for c in bad.clusters] == [("x", 1, 0, 0),
                                                                                         ("y", 0, 1, 0)]
    assert "1 lost in notes.txt (x)" in bad.summary() and "x added" in bad.feedback()


def test_overlap_accepts_one_copy_or_one_per_cluster_and_nothing_beyond(repo: tuple[Path, str]) -> None:
    """Overlap: two clusters added (or removed) the same line in the same file. Kept once (the
    same change made twice) or once per cluster (two changes) are both right; a third copy is not,
    and neither is a removed line coming back."""
    path, base = repo
    x = branch(path, "x", base, "alpha\ngamma\nshared\n")  # removes beta, adds shared
    y = branch(path, "y", base, "shared\nalpha\ngamma\n")  # the same, elsewhere
    for text in ("alpha\ngamma\nshared\n", "shared\nalpha\ngamma\nshared\n"):
        assert account(path, base, integrated(path, base, text), [x, y], []).ok, text
    thrice = account(path, base, integrated(path, base, "shared\nalpha\nshared\ngamma\nshared\n"), [x, y], [])
    assert kinds(thrice) == [("duplicated", ["x", "y"], ["shared"], 1)]
    back = account(path, base, integrated(path, base, "alpha\nbeta\ngamma\nshared\n"), [x, y], [])
    assert kinds(back) == [("resurrected", ["x", "y"], ["beta"], 1)]
    # Without overlap the count is exact: one cluster's line twice is a duplicate.
    (z,) = [branch(path, "z", base, "alpha\nbeta\ngamma\nonly z\n")]
    twice = account(path, base, integrated(path, base, "alpha\nbeta\ngamma\nonly z\nonly z\n"), [z], [])
    assert kinds(twice) == [("duplicated", ["z"], ["only z"], 1)]


def test_whitespace_and_blank_lines_are_not_changes(repo: tuple[Path, str]) -> None:
    path, base = repo
    x = branch(path, "x", base, "alpha\nbeta\ngamma\n    indented  twice\n")
    assert account(path, base, integrated(path, base, "alpha\n\nbeta\ngamma\nindented twice\n"), [x], []).ok


def test_the_integrations_own_lines_need_a_decision_which_may_be_a_bullet(repo: tuple[Path, str]) -> None:
    path, base = repo
    x = branch(path, "x", base, "alpha\nbeta\ngamma\nx added\n")
    final = integrated(path, base, "alpha\nbeta\ngamma\nx added\nglue by the agent\n")

    plain = account(path, base, final, [x], [])
    assert kinds(plain) == [("new", ["integration"], ["glue by the agent"], 1)] and not plain.ok

    said = parse_decisions("# What I did\n\n- `notes.txt`: added glue so x's line reads on.\n", source="person.md")
    explained = account(path, base, final, [x], said)
    assert explained.ok
    (issue,) = explained.issues
    assert issue.reason == "`notes.txt`: added glue so x's line reads on."
    assert issue.explained_by == "a person (person.md, bullet)"


def test_a_file_only_the_integration_changed_is_accounted_too(repo: tuple[Path, str]) -> None:
    path, base = repo
    x = branch(path, "x", base, "alpha\nbeta\ngamma\nx\n")
    both = githistory.commit_files_on(path, base, {"notes.txt": b"alpha\nbeta\ngamma\nx\n", "other.txt": b"stray\n"},
                                      "i")
    acc = account(path, base, both, [x], [])
    assert acc.files == 2 and kinds(acc) == [("new", ["integration"], ["stray"], 1)]


def test_python_checks_flag_what_the_merge_introduced_and_not_what_a_side_wrote() -> None:
    base = "import os\n__all__ = ['a', 'c']\nLIMIT = 1\n"
    final = "import os\nimport os\n__all__ = ['a', 'b', 'b', 'c']\nLIMIT = 1\nLIMIT = 2\n"
    found = findings_for("m.py", final, [base, "import os\n__all__ = ['a', 'b', 'c']\nLIMIT = 2\n"])
    assert [(f.line, f.message) for f in found] == [
        (2, "`os` is imported twice"), (3, "'b' is listed twice in `__all__`"),
        (5, "`LIMIT` is bound twice at module level (the last binding wins)")]
    # A side that bound LIMIT twice itself: not the merge's doing.
    assert [f.message for f in findings_for("m.py", final, [base, "LIMIT = 1\nLIMIT = 2\nimport os\nimport os\n"])
            if "LIMIT" in f.message or "import" in f.message] == []
    overloads = "@overload\ndef f(x: int) -> int: ...\n@overload\ndef f(x: str) -> str: ...\n"
    assert findings_for("m.pyi", overloads + "@overload\ndef f(x: bytes) -> bytes: ...\n", [overloads]) == []
    assert [f.message for f in findings_for("m.py", "x = (\n", [base])] == [
        "does not parse as Python: '(' was never closed (<unknown>, line 1)"]
    # Each text is scanned once and the scan shared (pychecks._scan): asked again, the same answer,
    # and no caller can change what the next one reads.
    assert findings_for("m.py", final, [base]) == findings_for("m.py", final, [base]) != []
    with pytest.raises(TypeError):
        duplicates(final)[("bound", "LIMIT")] = (0, 0)  # type: ignore[index]


def test_decisions_are_read_as_models_write_them() -> None:
    text = ("# Decisions\n\nI kept both timeouts in `app/config.py` because api and ui differ.\n\n"
            "- ui/views.py: renamed the clashing helper, e.g. version 3.12 style.\n- nothing named here\n\n"
            "## app/registry.py (hunk 2)\n\nKept both entries.\n")
    found = [(d.file, d.form, d.hunk, d.reason) for d in parse_decisions(text, source="merge-ui-1.md")]
    assert found == [
        ("app/config.py", "paragraph", None, "I kept both timeouts in `app/config.py` because api and ui differ."),
        ("ui/views.py", "bullet", None, "ui/views.py: renamed the clashing helper, e.g. version 3.12 style."),
        ("app/registry.py", "heading", 2, "Kept both entries.")]
    assert [(d.file, d.form) for d in parse_decisions('[{"file": "a.py", "reason": "r"}]')] == [("a.py", "json")]


def test_a_block_two_clusters_carry_kept_twice_is_duplicated_but_a_common_line_is_not(
        repo: tuple[Path, str]) -> None:
    path, base = repo
    block = "def helper():\n    value = 1\n    value += 1\n    return value\n"
    x = branch(path, "x", base, block + "alpha\nbeta\ngamma\nreturn\n")
    y = branch(path, "y", base, "alpha\nbeta\ngamma\n" + block + "return\n")
    once = account(path, base, integrated(path, base, block + "alpha\nbeta\ngamma\nreturn\n"), [x, y], [])
    assert once.ok
    # `return` both added, kept twice: two changes, as far as anyone can tell. The block kept twice
    # is one change made twice: its second copy is a duplicate.
    twice = account(path, base, integrated(path, base, block + "alpha\nbeta\ngamma\n" + block + "return\nreturn\n"),
                    [x, y], [])
    assert kinds(twice) == [("duplicated", ["x", "y"], ["def helper():", "value = 1", "value += 1", "return value"],
                             4)]
