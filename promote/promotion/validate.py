"""``promote validate``: load the configuration, render every environment, run the checks.

Orchestration only: configuration comes from ``config``, rendering from ``render``, the rules
from the pure ``validation`` module. Checks beyond the
generic ones live in ``EXTRA_CHECKS``: the secrets package's (SOPS values and recipients, key
material in keys/) are there by default; the reconcile agent runs the same list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from promote import config
from promote.cluster import validation
from promote.errors import PromoteError
from promote.kustomize import render, sandbox
from promote.secrets.authoring import checks as secret_checks

Objects = list[dict[str, Any]]
ExtraCheck = Callable[[config.Project, config.Environment, Objects], list[validation.Finding]]
EXTRA_CHECKS: list[ExtraCheck] = [secret_checks.check_environment]


@dataclass(frozen=True, slots=True)
class EnvReport:
    env: str
    objects: int
    findings: tuple[validation.Finding, ...]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.findings and self.error is None


@dataclass(frozen=True, slots=True)
class Report:
    envs: tuple[EnvReport, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.envs)

    def problems(self) -> list[str]:
        out = []
        for e in self.envs:
            if e.error:
                out.append(f"{e.env}: {e.error}")
            out.extend(str(f) for f in e.findings)
        return out


def check_rendered(
    project: config.Project,
    env: config.Environment,
    objects: Objects,
    *,
    namespace: str | None = None,
) -> list[validation.Finding]:
    """Every check on an environment's rendered objects: the generic ones and EXTRA_CHECKS.

    The one list both ``promote validate`` and the reconcile agent run (the agent passes the
    namespace it deploys to; the default is the environment file's).
    """
    findings = validation.check_objects(
        objects,
        env=env.name,
        namespace=namespace or env.config.cluster.namespace,
        allow_latest=env.name in project.config.policy.allow_latest,
    )
    for check in EXTRA_CHECKS:
        findings.extend(check(project, env, objects))
    return findings


def validate_env(
    project: config.Project, env: config.Environment, kustomize: render.Kustomize
) -> EnvReport:
    try:
        objects = kustomize.build(env.overlay_dir, sandbox=sandbox.for_project(project))
    except PromoteError as exc:
        return EnvReport(env.name, 0, (), error=str(exc.relative_to(project.root)))
    return EnvReport(env.name, len(objects), tuple(check_rendered(project, env, objects)))


def validate_project(
    project: config.Project,
    envs: Sequence[str] | None = None,
    *,
    kustomize: render.Kustomize | None = None,
) -> Report:
    names = list(envs) if envs else project.pipeline()
    for name in names:
        project.env(name)  # unknown names are a usage error before any work
    kz = kustomize or render.Kustomize()
    return Report(tuple(validate_env(project, project.env(n), kz) for n in names))
