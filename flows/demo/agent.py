"""The demo's scripted agent: a real subprocess that writes each cluster's code.

It is not an LLM. It reads the protocol's environment (WC_CLUSTER, WC_PROMPT_FILE, ...), checks
that its prompt carries the contract, writes the cluster's prepared solution into its owned
folder, commits part of it and leaves the rest for work-clusters to commit, as real agents do.
It serves the Python demo and the TypeScript one (a worktree with a tsconfig.json), and any
attempt of either: run again, it rewrites the same files and commits only what changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
PYTHON = (HERE / "solutions", {"data": "auth_db", "backend": "auth_api", "frontend": "auth_ui"},
          "class AuthAPI(Protocol)", "*.py")
TYPESCRIPT = (HERE / "typescript" / "solutions", {"data": "auth-db", "backend": "auth-api", "frontend": "auth-ui"},
              "interface AuthAPI {", "*.ts")
TS_SOLUTION = {"data": "db", "backend": "api", "frontend": "ui"}


def main(argv: list[str]) -> int:
    cluster, role = os.environ["WC_CLUSTER"], os.environ.get("WC_ROLE", "cluster")
    if role != "cluster":
        print(f"scripted agent: nothing to do as {role} (the demo's merges need no agent)")
        return 0
    if argv[1:3] == ["--fail", cluster]:  # `work-clusters demo --fail`: one cluster fails on purpose
        print(f"scripted agent [{cluster}]: cannot build {cluster}: failing on purpose (demo --fail)",
              file=sys.stderr)
        return 1
    typescript = Path("tsconfig.json").is_file()
    solutions, targets, marker, pattern = TYPESCRIPT if typescript else PYTHON
    prompt = Path(os.environ["WC_PROMPT_FILE"]).read_text()
    if marker not in prompt:
        print("scripted agent: the prompt does not carry the contract", file=sys.stderr)
        return 3
    target = Path(targets[cluster])
    target.mkdir(exist_ok=True)
    files = sorted((solutions / (TS_SOLUTION[cluster] if typescript else cluster)).glob(pattern))
    for src in files:
        shutil.copyfile(src, target / src.name)
        print(f"scripted agent [{cluster}] wrote {target / src.name}")
    # Commit the first file ourselves; leave the rest uncommitted for work-clusters to commit.
    subprocess.run(["git", "add", str(target / files[0].name)], check=True)
    if subprocess.run(["git", "diff", "--cached", "--quiet"], check=False).returncode != 0:
        subprocess.run(["git", "commit", "-q", "-m", f"{cluster}: {files[0].name}"], check=True)
    print(f"scripted agent [{cluster}] done (attempt {os.environ['WC_ATTEMPT']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
