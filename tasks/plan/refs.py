"""References of a plan's ``provides``, and which cluster provides which.

Python: ``module.path:Name``, a module at the root or under ``src/``, as ``.py`` or ``.pyi``.
TypeScript: ``path/to/file.ts:Name``, the file itself (``.ts``, ``.tsx``, ``.mts``, ``.cts``).
One definition for the prompt (what a cluster must implement) and the conformance check (what is
checked in its worktree).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prefect_work_clusters.tasks.plan.models import Plan
from prefect_work_clusters.tasks.plan.paths import PathSet

_NAME = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
REF = re.compile(rf"^(?P<module>{_NAME}):(?P<name>{_NAME})$")
TS_SUFFIXES = (".ts", ".tsx", ".mts", ".cts")
TS_REF = re.compile(r"^(?P<module>[\w@.-]+(?:/[\w@.-]+)*\.(?:ts|tsx|mts|cts)):(?P<name>[A-Za-z_$][\w$]*)$")


@dataclass(frozen=True)
class Ref:
    """``module.path:Name``: a name defined in an importable module."""

    module: str
    name: str

    @property
    def typescript(self) -> bool:
        return self.module.endswith(TS_SUFFIXES)

    @classmethod
    def parse(cls, text: str) -> Ref:
        match = REF.match(text.strip()) or TS_REF.match(text.strip())
        if match is None:
            raise ValueError(ref_problem(text))
        return cls(match["module"], match["name"])

    def __str__(self) -> str:
        return f"{self.module}:{self.name}"


def ref_problem(text: str) -> str | None:
    """Why ``text`` is not a reference, or None when it is one."""
    if REF.match(text.strip()) or TS_REF.match(text.strip()):
        return None
    return (f"{text!r} is not a reference of the form module.path:Name (dotted module, a colon, "
            "the name defined in it), e.g. 'auth_api.service:AuthService', or, for TypeScript, "
            "path/to/file.ts:Name, e.g. 'auth-api/service.ts:AuthService'")


def module_paths(module: str) -> list[str]:
    """The repo paths a module may live at, at the root or under ``src/``.

    >>> module_paths("auth_api.service")[:2]
    ['auth_api/service.py', 'auth_api/service.pyi']
    >>> module_paths("auth-api/service.ts")
    ['auth-api/service.ts']
    """
    if module.endswith(TS_SUFFIXES):
        return [module]
    rel = module.replace(".", "/")
    return [f"{root}{rel}{end}" for root in ("", "src/")
            for end in (".py", ".pyi", "/__init__.py", "/__init__.pyi")]


def all_provides(plan: Plan) -> list[tuple[Ref, Ref]]:
    """Every ``provides`` entry as (implementation, contract type)."""
    return [(Ref.parse(impl), Ref.parse(contract)) for impl, contract in plan.provides.items()]


def provided_by(plan: Plan, cluster: str) -> list[tuple[Ref, Ref]]:
    """The ``provides`` entries whose implementation module lies in the cluster's owned paths."""
    owned = PathSet(plan.cluster(cluster).paths)
    return [pair for pair in all_provides(plan) if any(owned.matches(p) for p in module_paths(pair[0].module))]
