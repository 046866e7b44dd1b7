"""Gather the JSON results of the benchmark scripts into one file, and render them as markdown.

    python bench/collect.py bench/results/*.json --out bench/results.json [--readme README.md]

With --readme, the part of that file between the markers ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` is replaced by the table (and the machine it ran on); nothing else in the
file is touched.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def where(data: dict[str, Any]) -> str:
    """Where and when one benchmark's figures were taken: cores, date, and the load then."""
    load = data.get("load")
    return (f"{data['machine']['nproc']} cores, {data['when'][:10]}"
            + (f", load {load[0]:.1f}" if load else ""))


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Latest run: {results['when']} on {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, "
        f"git {m['git']}, Python {m['python']}, Prefect {m['prefect']}. Each benchmark names its machine's "
        "cores, its date and the 1-minute load average when it finished; every figure, detail rows "
        "included, is in `bench/results.json`.",
        "",
        "| benchmark | figure | value | target | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, data in results["benchmarks"].items():
        for row in data.get("table", []):
            if row["figure"].startswith("  "):
                continue  # detail rows stay in the JSON
            cells = [f"{name} ({where(data)})", row["figure"], row["value"], row["target"], row["verdict"]]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def update_readme(path: Path, table: str) -> None:
    text = path.read_text()
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        sys.exit(f"{path} has no {BEGIN} ... {END} section to update")
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="JSON files written by the scripts' --out, in the "
                                                            "order the table shows them")
    parser.add_argument("--out", type=Path, required=True, help="the combined JSON file")
    parser.add_argument("--readme", type=Path, help="update the marked benchmark section of this file")
    parser.add_argument("--load", help="the load average when the run started, kept in the JSON")
    args = parser.parse_args()

    benchmarks: dict[str, Any] = {}
    machine: dict[str, Any] = {}
    when = ""
    for file in args.files:
        data = json.loads(file.read_text())
        benchmarks[data["benchmark"]] = data
        machine = machine or data["machine"]
        when = max(when, data["when"])
    results = {"when": when, "machine": machine, "load": args.load, "benchmarks": benchmarks}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    print(table)
    if args.readme:
        update_readme(args.readme, table)


if __name__ == "__main__":
    main()
