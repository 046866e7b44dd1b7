"""Where a token for a git remote or the GitHub API comes from: one place for the remote's
pushes and fetches (``tasks.remote``) and for pull requests (``tasks.integration.pull_request``).
It reaches git only through ``tasks.git.remote.askpass_env``."""

from __future__ import annotations

import os
from typing import Any

from pydantic import SecretStr

from prefect_work_clusters.tasks.errors import BadInput

# Where a token is looked for when no credentials block is named, in this order.
TOKEN_ENV = ("WC_GIT_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN")


def token(credentials: str | None) -> str | None:
    """The remote's token: from the named block (a ``Secret``, or ``<block-type>/<name>`` of a
    credentials block with a ``token``, as prefect-github's and prefect-gitlab's), else from the
    first of ``TOKEN_ENV`` that is set."""
    if credentials:
        from prefect.blocks.core import Block
        from prefect.blocks.system import Secret

        try:
            block = Block.load(credentials) if "/" in credentials else Secret.load(credentials)
        except (ValueError, RuntimeError) as exc:
            raise BadInput(f"credentials block {credentials!r} cannot be loaded ({exc}); save it first "
                           "(a Secret, or <block-type>/<name>) or leave --credentials out") from None
        value: Any = block.get() if isinstance(block, Secret) else getattr(block, "token", None)
        secret = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(secret, str) or not secret:
            raise BadInput(f"credentials block {credentials!r} holds no token")
        return secret
    return next((os.environ[name] for name in TOKEN_ENV if os.environ.get(name)), None)
