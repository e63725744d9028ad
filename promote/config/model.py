"""Load and validate ``promote.yaml`` and ``environments/*.yaml``.

This module is the only reader of our YAML configuration. It turns the files into frozen
dataclasses and turns every problem into one :class:`~promote.errors.ConfigError`
paragraph that names the file, the line (when YAML knows it), the field and the fix.
``schema.py`` reads the files (PyYAML's node tree gives the lines) and builds the dataclasses
with a small generic validator; this module declares them and checks what spans files
(upstreams, overlays, approvers; ``checks.py`` holds the trusted-signer and merge-window
checks of one file). No pydantic or ruamel: the CLI imports this module on every
start, so it must stay cheap.
It does no I/O beyond reading those files and checking that overlay folders exist.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from promote.config import checks, schema
from promote.config.release import (
    RollbackMode,
    VerificationConfig,
    WindowsConfig,
)
from promote.errors import ConfigError

parse_duration = schema.parse_duration
format_duration = schema.format_duration

PROJECT_FILE = "promote.yaml"
ENV_DIR = "environments"
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_ENV_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# --- promote.yaml ---------------------------------------------------------------------------
# Field names are the Python spelling; the YAML key is their camelCase form (``token_env`` is
# ``tokenEnv``). Both spellings are accepted when loading.


@dataclass(frozen=True, slots=True, kw_only=True)
class ForgeConfig:
    """Where pull requests live. ``local`` keeps them in the Git remote itself (no server)."""

    type: Literal["local", "gitea", "github"] = "local"
    url: str | None = None
    repo: str | None = None  # OWNER/NAME on the forge
    token_env: str | None = None  # environment variable with the token


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """Repository-wide checks applied by ``promote validate`` and promotions."""

    # environments where an image may use :latest or no tag
    allow_latest: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteBaseConfig:
    """A remote kustomize base an overlay may use: its repository URL, pinned to a commit."""

    url: str
    ref: str  # a full commit SHA (40 hex digits), so Git history says what was deployed


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderConfig:
    """How overlays are rendered. By default nothing outside the repository is read."""

    remote_bases: list[RemoteBaseConfig] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectConfig:
    main_branch: str = "main"
    remote: str = "origin"
    forge: ForgeConfig = field(default_factory=ForgeConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    render: RenderConfig = field(default_factory=RenderConfig)


# --- environments/<env>.yaml ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    context: str | None = None
    kubeconfig: str | None = None
    in_cluster: bool = False
    namespace: str = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalsConfig:
    required: int = field(default=0, metadata={"ge": 0})
    approvers: list[str] = field(default_factory=list)
    allow_self_approval: bool = False
    # Commits the agent accepts without a PR: signed by one of these keys (a public key file
    # under keys/, or a 40-hex fingerprint of a key in a file under keys/). Empty: none.
    trusted_signers: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class IgnoreRule:
    """Fields another controller owns (e.g. an autoscaler's ``/spec/replicas``)."""

    kind: str
    name: str | None = None
    namespace: str | None = None
    paths: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncConfig:
    interval: timedelta = timedelta(seconds=60)  # durations are written 30s, 5m, 1h30m
    self_heal: bool = True
    prune: bool = True
    ignore: list[IgnoreRule] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultConfig:
    address: str
    kv_mount: str = "secret"
    auth: Literal["token", "approle", "kubernetes"] = "token"
    role: str | None = None  # AppRole role_id or Kubernetes auth role
    auth_mount: str | None = None
    namespace: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretsConfig:
    vault: VaultConfig | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GatesConfig:
    soak: timedelta | None = None
    # Supply chain (issue 17), both off by default so images in no reachable registry work:
    # pinDigests resolves each promoted tag to its digest (crane, at promotion time) and pins
    # it (newTag + digest), so a tag moved later cannot change what this environment runs;
    # signedImages blocks an image without a cosign signature by a key in keys/image-signers/.
    pin_digests: bool = False
    signed_images: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentConfig:
    upstream: str | None = None
    overlay: str | None = None
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    approvals: ApprovalsConfig = field(default_factory=ApprovalsConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    verification: VerificationConfig | None = None  # none: nothing is verified after deploy
    rollback: RollbackMode = "pr"  # after a failed verification: a PR (approvals) or merged
    # `promote auto` promotes versions the upstream's agent verified after deploy (issue 16).
    auto_promote: bool = False

    @property
    def break_glass_required(self) -> int:
        found = self.windows.break_glass.required
        return self.approvals.required if found is None else found


@dataclass(frozen=True, slots=True)
class Environment:
    """One environment: its name, its file and its validated settings."""

    name: str
    file: Path
    config: EnvironmentConfig
    overlay_dir: Path  # absolute

    @property
    def upstream(self) -> str | None:
        return self.config.upstream


@dataclass(frozen=True, slots=True)
class Project:
    root: Path
    config: ProjectConfig
    environments: Mapping[str, Environment]
    # Environments whose own file does not load (``load_project(isolate=True)``), with why:
    # using one raises its error; the others work (issue 14's rule, for every command).
    broken: Mapping[str, ConfigError] = field(default_factory=dict)
    # Those of them whose file parsed but failed a check: their overlay is known, so what a
    # change touches can still be told (kustomize.folder.layout).
    unchecked: Mapping[str, Environment] = field(default_factory=dict)

    def env(self, name: str) -> Environment:
        from promote.errors import UsageError

        if name in self.broken:
            raise self.broken[name]
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(self.pipeline()) or "none"
            raise UsageError(
                f"unknown environment {name!r}; this project defines: {known} "
                f"(one file per environment in {ENV_DIR}/)."
            ) from None

    def pipeline(self, *, broken: bool = False) -> list[str]:
        """Environments in promotion order; ``broken`` adds those in ``Project.broken`` last
        (their upstream is unknown), for a report that shows every environment."""
        order = pipeline_order({n: e.upstream for n, e in self.environments.items()})
        return order + sorted(self.broken) if broken else order

    def downstream(self, name: str) -> list[str]:
        return [n for n in self.pipeline() if self.environments[n].upstream == name]

    def relpath(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


# --- loading --------------------------------------------------------------------------------


def load_project(root: Path | str, *, only: str | None = None, isolate: bool = False) -> Project:
    """Load the project at ``root``; raise ConfigError naming file, line, field and fix.

    ``only`` (an agent) reads ``promote.yaml`` and that one environment's file: the other
    environments' files are only listed by name, so one environment's broken file never stops
    another environment's agent (issue 14). The project then holds that environment alone.
    ``isolate`` carries an environment whose own file fails (its YAML, schema or checks) in
    ``Project.broken`` instead of raising, so a command about another environment still works;
    ``promote.yaml`` and the checks across files still raise. ``promote validate`` is strict.
    """
    root = Path(root).resolve()
    project_file = root / PROJECT_FILE
    env_dir = root / ENV_DIR
    if not project_file.exists() and not env_dir.is_dir():
        raise ConfigError(
            f"{root}: not a promote project (no {PROJECT_FILE} and no {ENV_DIR}/); run "
            "`promote init` to create one, or change to the repository's top level."
        )
    project_cfg = ProjectConfig()
    if project_file.exists():
        data, node = schema.read_yaml(project_file, PROJECT_FILE)
        project_cfg = schema.validate(ProjectConfig, data, node, PROJECT_FILE)
    envs: dict[str, Environment] = {}
    files = sorted(env_dir.glob("*.yaml")) if env_dir.is_dir() else []
    names = {path.stem for path in files}
    if only is not None and only not in names:
        raise ConfigError(
            f"{ENV_DIR}/{only}.yaml: no such file at this revision; the environment {only!r} "
            f"is not defined here (defined: {', '.join(sorted(names)) or 'none'})."
        )
    broken: dict[str, ConfigError] = {}
    unchecked: dict[str, Environment] = {}
    nodes: dict[str, Any] = {}  # each file's YAML nodes: the line of a field in a message
    for path in files:
        name, env = path.stem, None
        if only is not None and name != only:
            continue
        try:
            env, node = nodes[name] = _read_environment(root, path)
            checks.check_environment(name, env, node, names)
            envs[name] = env
        except ConfigError as exc:
            if not isolate:
                raise
            broken[name] = exc
            if env is not None:
                unchecked[name] = env
    if not envs and len(broken) == 1:
        raise next(iter(broken.values()))
    if not envs and broken:  # every file is broken: name each fault, not only the first
        raise ConfigError(
            f"{ENV_DIR}/: none of the {len(broken)} environment files loads "
            f"({', '.join(sorted(broken))}); fix each one as its message below says.",
            problems=[str(broken[n]) for n in sorted(broken)],
        )
    if not envs:
        raise ConfigError(
            f"{ENV_DIR}/: no environment files; add one YAML file per environment, "
            f"e.g. {ENV_DIR}/dev.yaml (`promote init` writes dev, staging and prod)."
        )
    _check_upstream_cycles(envs, nodes)
    _check_project(project_cfg, names)
    return Project(root, project_cfg, envs, broken=broken, unchecked=unchecked)


def _read_environment(root: Path, path: Path) -> tuple[Environment, Any]:
    """One environment file, read and validated against its schema (not yet checked)."""
    name, display = path.stem, f"{ENV_DIR}/{path.name}"
    if not _ENV_NAME.match(name):
        raise ConfigError(
            f"{display}: {name!r} is not a valid environment name; rename the file to "
            "lower-case letters, digits and dashes (e.g. prod.yaml)."
        )
    data, node = schema.read_yaml(path, display)
    cfg = schema.validate(EnvironmentConfig, data, node, display)
    overlay = root / (cfg.overlay or f"overlays/{name}")
    return Environment(name=name, file=path, config=cfg, overlay_dir=overlay), node


def _check_upstream_cycles(envs: dict[str, Environment], nodes: dict[str, Any]) -> None:
    for name in envs:
        seen = [name]
        cur = envs[name].upstream
        while cur is not None and cur in envs:
            if cur in seen:
                cycle = " -> ".join([*seen[seen.index(cur) :], cur])
                line = schema.line_of(nodes.get(cur, (None, None))[1], ["upstream"])
                raise ConfigError(  # named by a file in the cycle, not by one leading into it
                    f"{ENV_DIR}/{cur}.yaml:{line or '?'}: upstream: the upstreams form a cycle "
                    f"({cycle}); "
                    "one environment (usually dev) must have no upstream."
                )
            seen.append(cur)
            cur = envs[cur].upstream


def _check_project(project_cfg: ProjectConfig, names: set[str]) -> None:
    for i, base in enumerate(project_cfg.render.remote_bases):
        if not _COMMIT_SHA.match(base.ref):
            raise ConfigError(
                f"{PROJECT_FILE}: render.remoteBases[{i}].ref: {base.ref!r} is not a commit SHA; "
                "pin the remote base to a full 40-hex commit (a branch or tag can move)."
            )
    for env_name in project_cfg.policy.allow_latest:
        if env_name not in names:
            raise ConfigError(
                f"{PROJECT_FILE}: policy.allowLatest: {env_name!r} names no environment; "
                f"use one of {', '.join(sorted(names))}."
            )


def pipeline_order(upstreams: Mapping[str, str | None]) -> list[str]:
    """Environments in promotion order: roots first, then each downstream (breadth first)."""
    order: list[str] = []
    # An upstream that is not listed (an agent loads its own environment only) is outside.
    frontier = sorted(n for n, u in upstreams.items() if u is None or u not in upstreams)
    while frontier:
        order.extend(frontier)
        frontier = sorted(n for n, u in upstreams.items() if u in frontier and n not in order)
    return order
