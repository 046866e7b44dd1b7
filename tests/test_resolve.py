"""The deterministic pieces of integration as pure functions: conflict parsing, the additive rule,
decisions in both formats. No git, no Prefect."""

from __future__ import annotations

import pytest

from prefect_work_clusters.tasks.integration.decisions import parse_decisions
from prefect_work_clusters.tasks.integration.resolvers import additive_resolve, hunks, parse_conflicts


def conflict(ours: str, base: str, theirs: str, before: str = "", after: str = "") -> str:
    return f"{before}<<<<<<< HEAD\n{ours}||||||| 1234567\n{base}=======\n{theirs}>>>>>>> clusters/x/ui\n{after}"


def test_parse_reads_the_three_sides_and_the_line() -> None:
    text = conflict("    'a',\n", "", "    'b',\n", before="R = [\n", after="]\n")
    (hunk,) = hunks(text)
    assert (hunk.index, hunk.line, hunk.ours, hunk.base, hunk.theirs) == (1, 2, ["    'a',\n"], [], ["    'b',\n"])
    with pytest.raises(ValueError, match="unterminated"):
        parse_conflicts("<<<<<<< HEAD\nx\n=======\ny\n")
    assert hunks("a\n======= not a marker? yes it is, but alone\n") == []


def test_both_sides_appending_keep_both_ours_first() -> None:
    text = conflict("    'api',\n    'ui',\n", "", "    'db',\n", before="R = [\n    'core',\n", after="]\n")
    assert additive_resolve("app/registry.py", text).text == "R = [\n    'core',\n    'api',\n    'ui',\n    'db',\n]\n"


def test_an_identical_item_line_is_kept_once_but_a_body_line_is_not() -> None:
    imports = conflict("import os\nimport api\n", "", "import os\nimport ui\n")
    assert additive_resolve("m.py", imports).text == "import os\nimport api\nimport ui\n"
    functions = conflict("def a():\n    pass\n", "", "def b():\n    pass\n")
    assert additive_resolve("m.py", functions).text == "def a():\n    pass\ndef b():\n    pass\n"
    same = conflict("X = 1\n", "", "X = 1\n")
    assert additive_resolve("m.py", same).text == "X = 1\n"


def test_base_equal_to_one_side_or_kept_by_both_is_additive() -> None:
    assert additive_resolve("f.txt", conflict("keep\n", "keep\n", "keep\nnew\n")).text == "keep\nnew\n"
    both = conflict("a\nmid\n", "mid\n", "mid\nz\n")
    assert additive_resolve("f.txt", both).text == "a\nmid\nz\n"


def test_a_changed_or_removed_base_line_is_not_additive() -> None:
    changed = conflict("TIMEOUT = 60\n", "TIMEOUT = 30\n", "TIMEOUT = 10\n")
    result = additive_resolve("app/config.py", changed)
    assert result.text is None and "changes or removes base lines" in result.reason
    no_base = "<<<<<<< HEAD\na\n=======\nb\n>>>>>>> x\n"  # merge style: no base to judge by
    assert additive_resolve("f.txt", no_base).text is None


def test_python_that_would_not_parse_is_dropped() -> None:
    text = conflict("    1,\n", "", "    2,\n", before="X = [\n", after="]]\n")
    result = additive_resolve("x.py", text)
    assert result.text is None and "does not parse as Python" in result.reason
    assert additive_resolve("x.txt", text).text == "X = [\n    1,\n    2,\n]]\n"  # not Python: not parsed


def test_every_hunk_must_be_additive_or_none_is_taken() -> None:
    text = conflict("a\n", "", "b\n") + conflict("c\n", "old\n", "d\n")
    assert additive_resolve("f.txt", text).text is None


def test_decisions_in_json_and_markdown() -> None:
    js = parse_decisions('[{"file": "app/config.py", "hunk": 1, "reason": "kept both"}, {"file": "x"}]')
    assert [(d.file, d.hunk, d.reason) for d in js] == [("app/config.py", 1, "kept both")]
    assert parse_decisions('{"decisions": [{"file": "a.py", "reason": "r"}]}')[0].file == "a.py"
    md = parse_decisions("# Decisions\n\n## `app/config.py` (hunk 2)\n\nBoth timeouts kept,\nby profile.\n\n"
                         "## app/registry.py\n\nOrder as merged.\n\n## empty.py\n")
    assert [(d.file, d.hunk, d.reason) for d in md] == [
        ("app/config.py", 2, "Both timeouts kept,\nby profile."), ("app/registry.py", None, "Order as merged.")]
    assert parse_decisions("{not json") == []
