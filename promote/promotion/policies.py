"""The policy gate: run ``policies/`` on rendered environments for plan, validate and merge.

Orchestration only: the policies are read by ``policy.files``, judged by the pure
``policy.evaluate``; this module decides which environments and which renders. A plan checks
the target's after-render (an UPDATE of what main renders, a CREATE of what is new, a DELETE
of what leaves); ``validate`` checks every environment as rendered; ``merge`` re-checks the
PR's head: every environment its change affects (``scope.affected``, so a change under
``policies/`` affects all), rendered from the head, against main's policies and the head's
(a PR cannot loosen the rules it is judged by, and a rule it adds is checked before it lands).
The CEL engine is imported only when a repository has policies.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promote import config
from promote.git import archive
from promote.kustomize import folder
from promote.policy import files
from promote.policy.findings import Finding
from promote.promotion import scope

if TYPE_CHECKING:
    from promote.policy import cel, model
    from promote.promotion import engine

log = logging.getLogger(__name__)
Objects = Sequence[dict[str, Any]]


@dataclass
class Checker:
    """A repository's policies, with their expressions compiled once."""

    policies: model.PolicySet
    engine: cel.Engine | None = field(default=None, repr=False)

    @property
    def bindings(self) -> int:
        return len(self.policies.bindings) if self.policies else 0

    def check(
        self, env: str, objects: Objects, *, namespace: str, before: Objects | None = None
    ) -> list[Finding]:
        if not self.policies or self.engine is None:
            return []
        from promote.policy import evaluate

        return evaluate.evaluate(
            self.policies, objects, env=env, namespace=namespace, before=before, engine=self.engine
        )


def prepare(root: Path) -> Checker:
    """Load ``root/policies`` and compile every expression (cheap when there is none).

    Runs beside the renders in a plan: importing the CEL engine (~0.2 s, mostly the package's
    own command-line tool) overlaps with kustomize's time.
    """
    found = files.load(root)
    if not found:
        return Checker(found)
    from promote.policy import cel

    engine = cel.Engine()
    for policy in found.policies:
        for expression in _expressions(policy):
            engine.compile(expression)
    return Checker(found, engine)


def _expressions(policy: model.Policy) -> list[str]:
    out = [e for _, e in (*policy.variables, *policy.match_conditions)]
    for v in policy.validations:
        out += [v.expression, v.message_expression] if v.message_expression else [v.expression]
    return out


def check_head(s: engine.Session, head_sha: str) -> list[Finding]:
    """Policy findings for a PR's head: each affected environment rendered from the head."""
    tmp = archive.scratch_dir("promote-head-")
    try:
        head_root = s.repo.export_tree(head_sha, tmp / "tree")
        checkers = [prepare(s.root), prepare(head_root)]
        if not any(c.policies for c in checkers):
            return []  # no policies on either side: nothing to render for
        head = config.load_project(head_root)
        changed = changed_paths(s.root, head_root)
        layout = folder.layout(head).merged(folder.layout(s.project))
        affected = scope.affected(changed, layout)
        kustomize = s.kustomizer()
        out: dict[str, Finding] = {}
        for name in affected.envs:
            if name not in head.environments:
                continue  # the PR removes it: nothing will be admitted there
            env = head.env(name)
            after = kustomize.build(env.overlay_dir)
            before = None
            if name in s.project.environments:
                before = s.render_overlay(s.project.env(name).overlay_dir, tree=s.tree)
            ns = env.config.cluster.namespace
            for checker in checkers:
                for f in checker.check(name, after, namespace=ns, before=before):
                    out.setdefault(str(f), f)
        return list(out.values())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def changed_paths(a: Path, b: Path) -> list[str]:
    """Repository paths whose content differs between two exported trees (either side)."""

    def files_of(root: Path) -> dict[str, Path]:
        return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}

    left, right = files_of(a), files_of(b)
    out = []
    for path in sorted(left.keys() | right.keys()):
        pa, pb = left.get(path), right.get(path)
        if pa is None or pb is None or pa.read_bytes() != pb.read_bytes():
            out.append(path)
    return out
