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
from promote.kustomize import folder, overlay, render, sandbox
from promote.promotion import people, policies
from promote.secrets.authoring import checks as secret_checks

Objects = list[dict[str, Any]]
ExtraCheck = Callable[[config.Project, config.Environment, Objects], list[validation.Finding]]


def check_overlay_images(
    project: config.Project, env: config.Environment, objects: Objects
) -> list[validation.Finding]:
    """Every ``images:`` value of the overlay follows the OCI reference grammar (issue 13,
    finding 7): a "tag" holding a newline and a YAML key must not reach a cluster."""
    try:
        path = folder.kustomization_path(env.overlay_dir)
        display = project.relpath(path)
        entries = overlay.image_entries(path.read_text(encoding="utf-8"), display)
    except (OSError, PromoteError):
        return []  # the render reports an unreadable kustomization, naming it
    return [
        validation.Finding(env.name, f"images entry {e.get('name')!r}", key, why, display)
        for e in entries
        for key, why in overlay.entry_problems(e)
    ]


EXTRA_CHECKS: list[ExtraCheck] = [secret_checks.check_environment, check_overlay_images]


@dataclass(frozen=True, slots=True)
class EnvReport:
    env: str
    objects: int
    findings: tuple[validation.Finding, ...]
    error: str | None = None
    notices: tuple[str, ...] = ()  # policy findings that do not deny (Warn, Audit)
    unchecked: tuple[str, ...] = ()  # kinds without a schema (custom resources): not failed
    unloaded: bool = False  # its environments/ENV.yaml does not load (``error`` says why)

    @property
    def ok(self) -> bool:
        return not self.findings and self.error is None


@dataclass(frozen=True, slots=True)
class Report:
    envs: tuple[EnvReport, ...] = field(default_factory=tuple)
    people: tuple[str, ...] = ()  # broken key files in keys/release-managers/, keys/developers/

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.envs) and not self.people

    def problems(self) -> list[str]:
        out = list(self.people)
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
    return check_all(project, env, objects, namespace=namespace)[0]


def check_all(
    project: config.Project,
    env: config.Environment,
    objects: Objects,
    *,
    namespace: str | None = None,
) -> tuple[list[validation.Finding], list[str]]:
    """:func:`check_rendered`'s findings and the kinds no schema checked (not failures)."""
    from promote.cluster import openapi  # jsonschema: ~0.1 s, only for commands that render

    ns = namespace or env.config.cluster.namespace
    findings = validation.check_objects(
        objects,
        env=env.name,
        namespace=ns,
        allow_latest=env.name in project.config.policy.allow_latest,
    )
    schema_findings, unchecked = validation.check_schemas(
        objects, openapi.for_objects(objects), env=env.name, namespace=ns
    )
    findings.extend(schema_findings)
    for check in EXTRA_CHECKS:
        findings.extend(check(project, env, objects))
    return findings, unchecked


def check_well_formed(env: config.Environment, objects: Objects) -> list[validation.Finding]:
    """What ``promote to`` checks on the target's render after the change: the objects valid
    against the Kubernetes schemas and within the API server's size limits."""
    from promote.cluster import openapi

    ns = env.config.cluster.namespace
    findings, _ = validation.check_schemas(
        objects, openapi.for_objects(objects), env=env.name, namespace=ns
    )
    for obj in objects:
        findings.extend(validation.check_size(obj, env.name, validation.object_ref(obj, ns)))
    return findings


def validate_env(
    project: config.Project,
    env: config.Environment,
    kustomize: render.Kustomize,
    *,
    checker: policies.Checker | None = None,
) -> EnvReport:
    try:
        objects = kustomize.build(env.overlay_dir, sandbox=sandbox.for_project(project))
    except PromoteError as exc:
        return EnvReport(env.name, 0, (), error=str(exc.relative_to(project.root)))
    findings, unchecked = check_all(project, env, objects)
    notices: list[str] = []
    ns = env.config.cluster.namespace
    for f in checker.check(env.name, objects, namespace=ns) if checker else ():
        if f.blocks:
            findings.append(validation.Finding(env.name, f.object, f"policy {f.policy}", str(f)))
        else:
            notices.append(str(f))
    return EnvReport(
        env.name,
        len(objects),
        tuple(findings),
        notices=tuple(notices),
        unchecked=tuple(unchecked),
    )


def validate_project(
    project: config.Project,
    envs: Sequence[str] | None = None,
    *,
    kustomize: render.Kustomize | None = None,
) -> Report:
    """Render and check ``envs`` (default: all). An environment whose file does not load
    (``Project.broken``, from ``load_project(isolate=True)``) is reported with its error and
    the others are still checked, so one run names every fault."""
    names = list(envs) if envs else project.pipeline(broken=True)
    for name in names:
        if name not in project.broken:
            project.env(name)  # unknown names are a usage error before any work
    kz = kustomize or render.Kustomize()
    checker = policies.prepare(project.root)  # policies/: every environment, as rendered
    with people.Registry(project.root, where="this checkout") as registered:
        broken = tuple(registered.all_problems())
    reports = tuple(
        EnvReport(n, 0, (), error=str(project.broken[n]), unloaded=True)
        if n in project.broken
        else validate_env(project, project.env(n), kz, checker=checker)
        for n in names
    )
    return Report(reports, broken)
