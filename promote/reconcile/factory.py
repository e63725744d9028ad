"""Build an environment's agent from its configuration and the command line's overrides.

The only place that turns settings into adapters (Git source, kustomize, cluster client,
secret resolver) for the reconcile side; the CLI calls it, tests build agents directly.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from promote import config
from promote.cluster import client
from promote.errors import PromoteError, UsageError
from promote.kustomize import render
from promote.reconcile import forgeproofs, pins, trust
from promote.reconcile import source as source_mod
from promote.reconcile.agent import Agent, AgentSettings
from promote.reconcile.desired import SecretResolver
from promote.secrets import files, resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Overrides:
    repo_url: str | None = None
    branch: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    self_heal: bool | None = None
    prune: bool | None = None
    allow_mass_prune: bool = False
    trust_from: str | None = None  # --trust-from: the pinned revision verification starts at


def cache_root() -> Path:
    """Where agents keep their bare Git caches: ``$PROMOTE_AGENT_CACHE``, else
    ``$PROMOTE_CACHE/agent`` (default ``~/.cache/promote/agent``)."""
    explicit = os.environ.get("PROMOTE_AGENT_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("PROMOTE_CACHE", Path.home() / ".cache" / "promote")) / "agent"


def connect_env(
    env: config.Environment, ov: Overrides, *, settings: config.ClusterConfig | None = None
) -> client.Cluster:
    """``settings``: the environment's cluster settings read from a verified revision (else
    its file in ``env``'s checkout); a relative kubeconfig is the checkout's file either way."""
    c = settings or env.config.cluster
    if ov.kubeconfig and not Path(ov.kubeconfig).expanduser().is_file():
        raise UsageError(
            f"--kubeconfig {ov.kubeconfig}: "
            + ("is a folder" if Path(ov.kubeconfig).is_dir() else "the file does not exist")
            + "; pass the path of a kubeconfig file (or leave it out to use each "
            "environment's cluster settings).",
        )
    kubeconfig = ov.kubeconfig or c.kubeconfig
    if kubeconfig and not Path(kubeconfig).is_absolute() and not ov.kubeconfig:
        kubeconfig = str((env.file.parent.parent / kubeconfig).resolve())
    # An explicit --kubeconfig (or KUBECONFIG) with no --context uses that file's current
    # context: the environment file's context names a context in the user's usual config.
    context = ov.context or (None if (ov.kubeconfig and not c.kubeconfig) else c.context)
    api = client.connect(kubeconfig=kubeconfig, context=context, in_cluster=c.in_cluster)
    return client.Cluster(api)


def resolver_at_revision(project: config.Project, env: config.Environment) -> SecretResolver:
    """The resolver for ``env`` as the deployed (verified) revision ``project`` defines it: its
    Vault address and auth come from that revision, so a token never goes to an address an
    unverified commit introduced (issue 13, item 9). The file names for messages are read now:
    the exported tree is gone when an error is reported."""
    names = files.sources(project, env)
    return resolve.Resolver.for_environment(env, sources=lambda: names)


def verified_cluster(
    project: config.Project, env: str, ov: Overrides, src: source_mod.GitSource
) -> tuple[str, config.ClusterConfig] | None:
    """The environment's cluster settings at the last verified revision of main, verified
    from the pin (``--trust-from`` or signed pin tags) without the cluster; None when no pin
    is known here (the connection then uses the checkout's settings, and every pass checks
    them against the verified revision it deploys: ``trust.Connection``)."""
    tags = functools.partial(pins.read_pin, src.repo, env, project)
    gate = trust.TrustGate(src.repo, trust.TrustSettings(pin=ov.trust_from, tags=tags), env=env)
    try:
        gate.restore(None)
        decision = gate.decide(src.fetch())
        rev = decision.deploy if decision.verified else decision.verdict.reached or decision.deploy
        with tempfile.TemporaryDirectory(prefix="promote-settings-") as tmp:
            tree = src.export(rev, Path(tmp) / "tree")
            return rev, config.load_project(tree, only=env).env(env).config.cluster
    except PromoteError as exc:
        log.info("%s: no verified cluster settings before connecting: %s", env, exc)
        return None
    finally:
        gate.verifier.close()


def verifies(env: config.Environment, ov: Overrides) -> bool:
    """Whether the agent verifies (DESIGN §4): the environment requires approvals, or a pin
    was given. Unverified heads are then never deployed."""
    return env.config.approvals.required > 0 or ov.trust_from is not None


def build_agent(
    project: config.Project,
    env_name: str,
    ov: Overrides,
    *,
    cluster: client.Cluster | None = None,
    resolver: SecretResolver | None = None,
) -> Agent:
    env = project.env(env_name)
    url = ov.repo_url or source_mod.default_url(project.root, project.config.remote)
    verifying = verifies(env, ov)
    src = source_mod.GitSource(
        url,
        branch=ov.branch or project.config.main_branch,
        cache_root=cache_root(),
        history=verifying or env.config.windows.any,  # windows walk steps and PR records
    )
    # Sync settings (selfHeal, prune, ignore) and secret access (Vault address, auth) are read
    # from each revision the agent deploys, which is verified first when the environment
    # requires approvals. The cluster connection (kubeconfig, context) and namespace come from
    # the operator (flags, the checkout the agent runs in): the agent needs them to read its
    # last verified revision from the cluster before it can trust anything in Git.
    # Credentials follow verified settings (issue 13 item 9): with a pin known here, the
    # cluster settings are read from the last verified revision, before connecting.
    found = verified_cluster(project, env_name, ov, src) if verifying and not cluster else None
    c = found[1] if found else env.config.cluster
    origin = f"verified revision {found[0][:12]}" if found else "the checkout"
    settings = AgentSettings(
        env=env.name,
        namespace=c.namespace,
        self_heal=ov.self_heal,
        prune=ov.prune,
        allow_mass_prune=ov.allow_mass_prune,
    )
    gate = None
    if verifying:
        proofs = forgeproofs.for_project(
            project.config, env.name, src.repo, url=url, cache_root=cache_root()
        )
        tags = functools.partial(pins.read_pin, src.repo, env.name, project)
        settings_ = trust.TrustSettings(pin=ov.trust_from, tags=tags)
        gate = trust.TrustGate(src.repo, settings_, env=env.name, proof_source=proofs)
    fixed = frozenset(n for n, v in (("kubeconfig", ov.kubeconfig), ("context", ov.context)) if v)
    fixed |= {"context"} if ov.kubeconfig and not ov.context and not c.kubeconfig else set()
    connection = trust.Connection(c.namespace, None if cluster else c, origin, fixed)
    agent = Agent(
        settings=settings,
        source=src,
        cluster=cluster or connect_env(env, ov, settings=c),
        kustomize=render.Kustomize(),
        resolver=resolver,
        resolver_for=resolver_at_revision,
        trust=gate,
    )
    agent.desired_state.connection = connection if gate is not None else None
    return agent
