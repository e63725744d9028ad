"""An environment's desired state: fetch, render, validate, decrypt, prepare.

The first half of a reconcile pass, up to the objects to compare with the cluster. Every step
only computes; a failure raises :class:`StageFailed` naming its stage, and nothing is applied.
Inputs render to the same objects, so the rendered (still encrypted) objects are kept in memory
by the content of their inputs (``reconcile/rendercache.py``), and other branches' heads can be
rendered ahead (``prerender``); Secrets are resolved on every build because Vault values may
change without a commit.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from promote import config
from promote.cluster import apply, drift, validation
from promote.errors import PromoteError
from promote.git import archive
from promote.kustomize import folder, realpaths, render, sandbox
from promote.promotion import validate
from promote.reconcile import chunkcache, exported, rendercache
from promote.reconcile.source import GitSource
from promote.reconcile.status import Stage

if TYPE_CHECKING:
    from promote.reconcile import trust

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
    rollback: config.RollbackMode = "pr"  # what a failed verification does


def _has_secrets(objects: Sequence[dict[str, Any]]) -> bool:
    return any(o.get("kind") == "Secret" for o in objects)


class EarlyDecryption:
    """``resolver.resolve(objects)`` running in a thread of its own, for one revision."""

    def __init__(
        self,
        revision: str,
        objects: list[dict[str, Any]],
        resolver: SecretResolver,
        *,
        env: str,
    ) -> None:
        self.revision, self.objects, self.resolver = revision, objects, resolver
        self._future: Future[list[dict[str, Any]]] = Future()
        threading.Thread(target=self._run, args=(env,), name=f"decrypt-{env}", daemon=True).start()

    def _run(self, env: str) -> None:
        try:
            self._future.set_result(self.resolver.resolve(self.objects, env=env))
        except BaseException as exc:  # handed to result(): raised in the pass's thread
            self._future.set_exception(exc)

    def serves(
        self, revision: str, objects: list[dict[str, Any]], resolver: SecretResolver
    ) -> bool:
        """Whether it decrypts exactly these objects of this revision with this resolver."""
        return revision == self.revision and objects is self.objects and resolver is self.resolver

    def result(self) -> list[dict[str, Any]]:
        """The resolved objects; raises what ``resolve`` raised."""
        return self._future.result()

    def drop(self) -> None:
        """Wait for it to end and forget what it decrypted (its render failed)."""
        self._future.exception()


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
        # Set by the factory for an environment that verifies: the cluster settings in use,
        # checked against those of each revision built (trust.Connection.check).
        self.connection: trust.Connection | None = None
        self.renders = rendercache.RenderCache(env)  # renders by input content, in memory
        self.chunks = chunkcache.ChunkCache()  # and each chunk of a large overlay's render
        # Exported trees and kustomize's chunk folders (ciphertext only) in memory when they
        # can be, as the CLI's (archive.scratch_dir: /dev/shm unless $TMPDIR names a place):
        # writing a 1,000-object tree took 0.3-0.8 s on this machine's disk, ~25 ms there.
        kept = (
            Path(tempfile.mkdtemp(prefix="promote-agent-tree-", dir=work_dir))
            if work_dir is not None
            else archive.scratch_dir("promote-agent-tree-")
        )
        self._scratch = kept.parent  # each render's chunk folders: beside it
        weakref.finalize(self, shutil.rmtree, kept, True)
        self.tree = exported.ExportedTree(kept / "tree")  # the last rendered, updated by diff
        # One render at a time: a pass that misses waits for a pre-render in flight (often
        # of the very inputs it needs) rather than running a second kustomize beside it.
        self._render_lock = threading.Lock()
        self._last: tuple[str, config.EnvironmentConfig] | None = None  # the last built
        # (revision, render, resolved objects, build) of the last build (``_prepared``);
        # the resolved objects hold Secret values in memory, as the agent's desired state does.
        self._last_built: tuple[str, rendercache.Rendered, list[dict[str, Any]], Desired] | None = (
            None
        )
        self._early: EarlyDecryption | None = None  # of the render just made, for build()

    def close(self) -> None:
        """Stop what the resolvers this built keep running (their sops decryptors)."""
        for resolver in [self.resolver, *self._resolvers.values()]:
            close = getattr(resolver, "close", None)
            if close is not None:
                close()

    def fetch(self) -> str:
        return stage(Stage.FETCH, self.source.fetch)

    def settings_at(self, revision: str) -> config.EnvironmentConfig | None:
        """The environment's settings at ``revision`` if it is the one last rendered."""
        if self._last is not None and self._last[0] == revision:
            return self._last[1]
        return None

    def build(self, revision: str) -> Desired:
        entry = self._rendered(revision)
        early, self._early = self._early, None  # decrypting since the render, if one ran
        objects, settings = entry.objects, entry.settings
        self._last = (revision, settings)
        if self.connection is not None:
            stage(
                Stage.VERIFY, self.connection.check, self.env, settings.cluster, revision=revision
            )
        resolver = self._resolver_at(revision)
        if any(validation.is_sops_object(o) for o in objects) and resolver is None:
            raise StageFailed(
                Stage.DECRYPT, PromoteError("SOPS-encrypted Secrets but no secret resolver.")
            )
        if resolver is not None and _has_secrets(objects):
            if early is not None and early.serves(revision, objects, resolver):
                objects = stage(Stage.DECRYPT, early.result)
            else:
                objects = stage(Stage.DECRYPT, resolver.resolve, objects, env=self.env)
        return self._prepared(revision, entry, objects)

    def _resolver_at(self, revision: str) -> SecretResolver | None:
        """The resolver for ``revision``'s secrets settings (given, or built for them)."""
        if self.resolver is not None or revision not in self._secrets_of:
            return self.resolver
        return self._resolvers.get(self._secrets_of[revision])

    def _decrypt_early(
        self, revision: str, settings: config.EnvironmentConfig, objects: list[dict[str, Any]]
    ) -> EarlyDecryption | None:
        """Start decrypting a new render's Secrets while it is validated (``_render``).

        Decryption runs in sops (another process) and validation in Python, so on two cores
        the one hides the other: about 0.25 s of a 1,000-object first sync. Only for a build
        (never a pre-render) of a revision whose cluster settings this connection serves: the
        order of the checks is unchanged, the result is used only once ``build`` has made
        them all, and a render that fails validation waits for it and drops it."""
        resolver = self._resolver_at(revision)
        if resolver is None or not _has_secrets(objects):
            return None
        if self.connection is not None:
            try:
                self.connection.check(self.env, settings.cluster, revision=revision)
            except PromoteError:
                return None  # build() reports it, before anything is decrypted
        return EarlyDecryption(revision, objects, resolver, env=self.env)

    def _prepared(
        self, revision: str, entry: rendercache.Rendered, resolved: list[dict[str, Any]]
    ) -> Desired:
        """The prepared objects of ``entry`` at ``revision`` with its Secrets ``resolved``.

        The same three prepare to the same objects, so a pass with nothing new (a no-op pass:
        same revision, same render, Secrets resolving to the same values) gets the previous
        build back, its ``objects`` the very same list: copying and labelling 10,000 objects
        cost about a second. The agent takes that identity to mean that no desired object
        changed (``Agent._compare``). ``resolved`` is compared, not trusted: a Vault value may
        change without a commit."""
        last = self._last_built
        if last is not None and last[0] == revision and last[1] is entry and last[2] == resolved:
            return last[3]
        settings = entry.settings
        ignore = settings.sync.ignore
        prepared = [drift.secret_to_data(drift.apply_ignores(o, ignore)) for o in resolved]
        built = Desired(
            revision,
            apply.prepare(prepared, env=self.env, revision=revision),
            running_images(entry.objects),
            settings.sync,
            settings.verification,
            settings.rollback,
        )
        self._last_built = (revision, entry, resolved, built)
        return built

    def prerender(self, ref: str) -> bool:
        """Render the head of another branch (a PR's) into the cache, so that a merge whose
        inputs equal it deploys without a render. Only computes: no resolver is built (no
        Vault address from an unverified commit is contacted), nothing is decrypted or
        applied; its objects are used only for a revision whose inputs are identical, after
        that revision is verified. True when it rendered."""
        revision = stage(Stage.FETCH, self.source.fetch_ref, ref)
        with self._render_lock:
            blobs = stage(Stage.FETCH, self.source.blobs, revision)
            if self.renders.find(blobs) is not None:
                return False
            self.renders.keep(self._render(revision, blobs, keep_resolver=False))
        return True

    def _rendered(self, revision: str) -> rendercache.Rendered:
        """The render of ``revision``: from the cache when its inputs were rendered before
        (a previous pass, a pre-rendered PR head, a rollback target), else kustomize."""
        blobs = stage(Stage.FETCH, self.source.blobs, revision)
        entry = self._usable(revision, blobs)
        if entry is None:
            with self._render_lock:
                entry = self._usable(revision, blobs)  # a pre-render may just have made it
                if entry is None:
                    entry = self._render(revision, blobs, keep_resolver=True)
                    self.renders.keep(entry)
        return entry

    def _usable(self, revision: str, blobs: dict[str, str]) -> rendercache.Rendered | None:
        entry = self.renders.find(blobs)
        if entry is None:
            return None
        wanted = entry.settings.secrets
        if len(self._secrets_of) > 64:
            self._secrets_of.clear()  # revisions deployed long ago
        building = self.resolver is None and self._resolver_for is not None
        if building and wanted not in self._resolvers:
            return None  # its resolver is built from a render's tree: render this one
        self._secrets_of[revision] = wanted
        return entry

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

    def _render(
        self, revision: str, blobs: dict[str, str], *, keep_resolver: bool
    ) -> rendercache.Rendered:
        """Export the tree at ``revision``, render the environment's overlay, validate it.

        The environment's settings (selfHeal, prune, ignore rules, verification) come from the same
        tree: what an agent does is decided by the revision it deploys, never by a checkout.
        """
        with tempfile.TemporaryDirectory(prefix="promote-agent-", dir=self._scratch) as tmp:
            tree = self.tree.where
            try:
                stage(Stage.FETCH, self.tree.at, self.source, revision, blobs)
                project = stage(Stage.RENDER, config.load_project, tree, only=self.env)
                environment = stage(Stage.RENDER, project.env, self.env)
                box = sandbox.for_project(project)
                paths = realpaths.RealPaths()  # the tree's links stay as they are until the end
                reads = stage(Stage.RENDER, box.check, environment.overlay_dir, realpath=paths)
                stage(Stage.RENDER, archive.check_links, tree, reads)
                memo = self.chunks.for_tree(tree, blobs, realpath=paths)
                objects: list[dict[str, Any]] = stage(
                    Stage.RENDER,
                    self.kustomize.build,
                    environment.overlay_dir,
                    sandbox=box,
                    scratch=Path(tmp) / "chunks",
                    checked=True,  # just above: ``reads``
                    memo=memo,
                    chunk=chunkcache.CHUNK_FOLDERS,
                )
            except StageFailed as exc:  # name the repository's paths, not the scratch tree's
                raise StageFailed(exc.stage, exc.cause.relative_to(tree)) from exc.__cause__
            early = None
            if keep_resolver:
                self._keep_resolver(revision, project, environment)
                early = self._decrypt_early(revision, environment.config, objects)
            try:
                findings = validate.check_rendered(
                    project, environment, objects, namespace=self.namespace
                )
                inputs = folder.input_paths(
                    tree, environment.overlay_dir, known=memo.reads, realpath=paths
                )
            except BaseException:
                if early is not None:
                    early.drop()
                raise
        if findings:
            if early is not None:
                early.drop()
            shown = "; ".join(str(f) for f in findings[:5])
            more = f" (+{len(findings) - 5} more)" if len(findings) > 5 else ""
            raise StageFailed(Stage.VALIDATE, PromoteError(shown + more))
        if keep_resolver:
            self._early = early
        return rendercache.entry_for(
            self.env, inputs, blobs, objects=objects, settings=environment.config
        )
