"""Build an environment's agent from its configuration and the command line's overrides.

The only place that turns settings into adapters (Git source, kustomize, cluster client,
secret resolver) for the reconcile side; the CLI calls it, tests build agents directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from promote import config
from promote.cluster import client
from promote.kustomize import render
from promote.reconcile import source as source_mod
from promote.reconcile.agent import Agent, AgentSettings
from promote.reconcile.desired import SecretResolver
from promote.secrets import resolve


@dataclass(frozen=True, slots=True)
class Overrides:
    repo_url: str | None = None
    branch: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    self_heal: bool | None = None
    prune: bool | None = None
    allow_mass_prune: bool = False


def cache_root() -> Path:
    """Where agents keep their bare Git caches: ``$PROMOTE_AGENT_CACHE``, else
    ``$PROMOTE_CACHE/agent`` (default ``~/.cache/promote/agent``)."""
    explicit = os.environ.get("PROMOTE_AGENT_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("PROMOTE_CACHE", Path.home() / ".cache" / "promote")) / "agent"


def connect_env(env: config.Environment, ov: Overrides) -> client.Cluster:
    c = env.config.cluster
    kubeconfig = ov.kubeconfig or c.kubeconfig
    if kubeconfig and not Path(kubeconfig).is_absolute() and not ov.kubeconfig:
        kubeconfig = str((env.file.parent.parent / kubeconfig).resolve())
    # An explicit --kubeconfig (or KUBECONFIG) with no --context uses that file's current
    # context: the environment file's context names a context in the user's usual config.
    context = ov.context or (None if (ov.kubeconfig and not c.kubeconfig) else c.context)
    api = client.connect(kubeconfig=kubeconfig, context=context, in_cluster=c.in_cluster)
    return client.Cluster(api)


def default_resolver(project: config.Project, env: config.Environment) -> SecretResolver:
    """SOPS + Vault resolution with key material from this process's environment."""
    return resolve.resolver_for_agent(project, env)


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
    src = source_mod.GitSource(
        url, branch=ov.branch or project.config.main_branch, cache_root=cache_root()
    )
    # Sync settings (selfHeal, prune, ignore) are read by the agent from each revision it
    # deploys; the flags here only override them. The cluster (kubeconfig, context, namespace)
    # and secret access still come from the local checkout: they steer credentials, and
    # reading them from Git must wait until the agent verifies what it reads (trust chain).
    settings = AgentSettings(
        env=env.name,
        namespace=env.config.cluster.namespace,
        self_heal=ov.self_heal,
        prune=ov.prune,
        allow_mass_prune=ov.allow_mass_prune,
    )
    return Agent(
        settings=settings,
        source=src,
        cluster=cluster or connect_env(env, ov),
        kustomize=render.Kustomize(),
        resolver=resolver if resolver is not None else default_resolver(project, env),
    )
