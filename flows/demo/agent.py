"""The demo's scripted agent: a real subprocess that writes each cluster's code.

It is not an LLM. It reads the protocol's environment (WC_CLUSTER, WC_PROMPT_FILE, ...), checks
that its prompt carries the contract, writes the cluster's prepared solution into its owned
folder, commits part of it and leaves the rest for work-clusters to commit, as real agents do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SOLUTIONS = Path(__file__).parent / "solutions"
TARGETS = {"data": "auth_db", "backend": "auth_api", "frontend": "auth_ui"}


def main() -> int:
    cluster = os.environ["WC_CLUSTER"]
    prompt = Path(os.environ["WC_PROMPT_FILE"]).read_text()
    if "class AuthAPI(Protocol)" not in prompt:
        print("scripted agent: the prompt does not carry the contract", file=sys.stderr)
        return 3
    target = Path(TARGETS[cluster])
    target.mkdir(exist_ok=True)
    files = sorted((SOLUTIONS / cluster).glob("*.py"))
    for src in files:
        shutil.copyfile(src, target / src.name)
        print(f"scripted agent [{cluster}] wrote {target / src.name}")
    # Commit the package marker ourselves; leave the rest uncommitted for work-clusters to commit.
    subprocess.run(["git", "add", str(target / "__init__.py")], check=True)
    subprocess.run(["git", "commit", "-q", "-m", f"{cluster}: package"], check=True)
    print(f"scripted agent [{cluster}] done (attempt {os.environ['WC_ATTEMPT']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
