"""An environment's desired state: fetch, render, validate, decrypt, prepare.

The first half of a reconcile pass, up to the objects to compare with the cluster. Every step
only computes; a failure raises :class:`StageFailed` naming its stage, and nothing is applied.
A revision renders to the same objects, so the rendered (still encrypted) objects are kept per
revision; Secrets are resolved on every build because Vault values may change without a commit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from promote import config
from promote.cluster import apply, drift, validation
from promote.errors import PromoteError
from promote.git import archive
from promote.kustomize import render, sandbox
from promote.promotion import validate
from promote.reconcile.source import GitSource
from promote.reconcile.status import Stage

T = TypeVar("T")


class SecretResolver(Protocol):
    """Turns SOPS-encrypted Secrets and ``vault:`` references into plain Secrets, in memory."""

    def resolve(self, objects: list[dict[str, Any]], *, env: str) -> list[dict[str, Any]]: ...


ResolverFor = Callable[[config.Project, config.Environment], SecretResolver]
"""Builds the resolver for the environment as a (verified) revision defines it: its Vault
address and settings come from the revision deployed, never from a local checkout."""


class StageFailed(PromoteError):
    """A pass failed at ``stage``; ``cause`` is the sanitised error."""

    def __init__(self, stage: Stage, cause: PromoteError) -> None:
        super().__init__(f"{stage}: {cause}")
        self.stage = stage
        self.cause = cause
        self.retryable = cause.retryable  # type: ignore[misc]


def stage(name: Stage, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one step, naming its stage if it fails."""
    try:
        return fn(*args, **kwargs)
    except PromoteError as exc:
        raise StageFailed(name, exc) from exc


def running_images(objects: Sequence[dict[str, Any]]) -> dict[str, str]:
    """``{image name: version}`` of every container, as the soak gate compares them: the name
    is the repository's last path segment (the ``images:`` entry's name), the version the tag
    and/or ``@digest`` (``overlay.Image.version``)."""
    out: dict[str, str] = {}
    for obj in objects:
        for _, ref in validation.container_images(obj):
            tag, digest = validation.image_tag(ref)
            repo = ref.split("@", 1)[0]
            if tag:
                repo = repo[: -(len(tag) + 1)]
            version = "@".join(p for p in (tag, digest) if p) or "(untagged)"
            out[repo.rsplit("/", 1)[-1]] = version
    return out


@dataclass(frozen=True, slots=True)
class Desired:
    revision: str
    objects: list[dict[str, Any]]  # prepared: labelled, decrypted, in apply order; not yet
    # scoped (namespaces come from discovery: apply.scope)
    images: dict[str, str]  # running_images() of the rendered objects
    sync: config.SyncConfig  # the environment's sync settings at this revision
    verification: config.VerificationConfig | None = None  # its verification after deploy


class DesiredState:
    """Builds an environment's desired objects from its Git source (one per agent)."""

    def __init__(
        self,
        *,
        env: str,
        namespace: str,
        source: GitSource,
        kustomize: render.Kustomize,
        resolver: SecretResolver | None,
        work_dir: Path | None = None,
        resolver_for: ResolverFor | None = None,
    ) -> None:
        self.env = env
        self.namespace = namespace
        self.source = source
        self.kustomize = kustomize
        self.resolver = resolver  # given: used for every revision (tests, `promote sync`)
        self._resolver_for = resolver_for
        self._resolvers: dict[config.SecretsConfig, SecretResolver] = {}
        self._secrets_of: dict[str, config.SecretsConfig] = {}  # revision -> its setting
        self._work_dir = work_dir
        # (revision, objects, the environment's settings at that revision)
        self._rendered: tuple[str, list[dict[str, Any]], config.EnvironmentConfig] | None = None

    def fetch(self) -> str:
        return stage(Stage.FETCH, self.source.fetch)

    def build(self, revision: str) -> Desired:
        if self._rendered is None or self._rendered[0] != revision:
            self._rendered = (revision, *self._render(revision))
        _, objects, settings = self._rendered  # same revision, same objects: kustomize runs once
        sync = settings.sync
        images = running_images(objects)
        resolver = self.resolver
        if resolver is None and revision in self._secrets_of:
            resolver = self._resolvers.get(self._secrets_of[revision])
        if any(validation.is_sops_object(o) for o in objects) and resolver is None:
            raise StageFailed(
                Stage.DECRYPT, PromoteError("SOPS-encrypted Secrets but no secret resolver.")
            )
        if resolver is not None and any(o.get("kind") == "Secret" for o in objects):
            objects = stage(Stage.DECRYPT, resolver.resolve, objects, env=self.env)
        prepared = [drift.secret_to_data(drift.apply_ignores(o, sync.ignore)) for o in objects]
        return Desired(
            revision,
            apply.prepare(prepared, env=self.env, revision=revision),
            images,
            sync,
            settings.verification,
        )

    def _keep_resolver(
        self, revision: str, project: config.Project, environment: config.Environment
    ) -> None:
        """The resolver for this revision's secrets settings (one per distinct setting)."""
        wanted = environment.config.secrets
        if len(self._secrets_of) > 64:
            self._secrets_of.clear()  # revisions deployed long ago
        self._secrets_of[revision] = wanted
        if self._resolver_for is not None and wanted not in self._resolvers:
            self._resolvers[wanted] = stage(Stage.DECRYPT, self._resolver_for, project, environment)

    def _render(self, revision: str) -> tuple[list[dict[str, Any]], config.EnvironmentConfig]:
        """Export the tree at ``revision``, render the environment's overlay, validate it.

        The environment's settings (selfHeal, prune, ignore rules, verification) come from the same
        tree: what an agent does is decided by the revision it deploys, never by a checkout.
        """
        with tempfile.TemporaryDirectory(prefix="promote-agent-", dir=self._work_dir) as tmp:
            tree = Path(tmp) / "tree"
            try:
                stage(Stage.FETCH, self.source.export, revision, tree)
                project = stage(Stage.RENDER, config.load_project, tree, only=self.env)
                environment = stage(Stage.RENDER, project.env, self.env)
                box = sandbox.for_project(project)
                reads = stage(Stage.RENDER, box.check, environment.overlay_dir)
                stage(Stage.RENDER, archive.check_links, tree, reads)
                objects: list[dict[str, Any]] = stage(
                    Stage.RENDER,
                    self.kustomize.build,
                    environment.overlay_dir,
                    sandbox=box,
                    scratch=Path(tmp) / "chunks",
                    checked=True,  # just above: ``reads``
                )
            except StageFailed as exc:  # name the repository's paths, not the scratch tree's
                raise StageFailed(exc.stage, exc.cause.relative_to(tree)) from exc.__cause__
            findings = validate.check_rendered(
                project, environment, objects, namespace=self.namespace
            )
            self._keep_resolver(revision, project, environment)
        if findings:
            shown = "; ".join(str(f) for f in findings[:5])
            more = f" (+{len(findings) - 5} more)" if len(findings) > 5 else ""
            raise StageFailed(Stage.VALIDATE, PromoteError(shown + more))
        return objects, environment.config
