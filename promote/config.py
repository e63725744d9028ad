"""Load and validate ``promote.yaml`` and ``environments/*.yaml``.

This module is the only reader of our YAML configuration. It turns the files into frozen
pydantic models and turns every problem into one :class:`~promote.errors.ConfigError`
paragraph that names the file, the line (when YAML knows it), the field and the fix.
It does no I/O beyond reading those files and checking that overlay folders exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from promote.errors import ConfigError

PROJECT_FILE = "promote.yaml"
ENV_DIR = "environments"
_ENV_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> timedelta:
    """Parse ``60s``, ``5m``, ``1h30m``, ``500ms`` (Go-style, as Flux and Argo CD write them)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    text = str(value).strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(
            f"{text!r} is not a duration; write a number with a unit, e.g. 30s, 5m, 1h or 1h30m"
        )
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


# --- promote.yaml ---------------------------------------------------------------------------


class ForgeConfig(_Model):
    """Where pull requests live. ``local`` keeps them in the Git remote itself (no server)."""

    type: Literal["local", "gitea", "github"] = "local"
    url: str | None = None
    repo: str | None = Field(default=None, description="OWNER/NAME on the forge")
    token_env: str | None = Field(default=None, description="environment variable with token")


class PolicyConfig(_Model):
    """Repository-wide checks applied by ``promote validate`` and promotions."""

    allow_latest: list[str] = Field(
        default_factory=list, description="environments where an image may use :latest or no tag"
    )


class ProjectConfig(_Model):
    main_branch: str = "main"
    remote: str = "origin"
    forge: ForgeConfig = ForgeConfig()
    policy: PolicyConfig = PolicyConfig()


# --- environments/<env>.yaml ----------------------------------------------------------------


class ClusterConfig(_Model):
    context: str | None = None
    kubeconfig: str | None = None
    in_cluster: bool = False
    namespace: str = "default"


class ApprovalsConfig(_Model):
    required: int = Field(default=0, ge=0)
    approvers: list[str] = Field(default_factory=list)
    allow_self_approval: bool = False


class IgnoreRule(_Model):
    """Fields another controller owns (e.g. an autoscaler's ``/spec/replicas``)."""

    kind: str
    name: str | None = None
    namespace: str | None = None
    paths: list[str]


class SyncConfig(_Model):
    interval: Duration = timedelta(seconds=60)
    self_heal: bool = True
    prune: bool = True
    ignore: list[IgnoreRule] = Field(default_factory=list)


class VaultConfig(_Model):
    address: str
    kv_mount: str = "secret"
    auth: Literal["token", "approle", "kubernetes"] = "token"
    role: str | None = Field(default=None, description="AppRole role_id or Kubernetes auth role")
    auth_mount: str | None = None
    namespace: str | None = None


class SecretsConfig(_Model):
    vault: VaultConfig | None = None


class GatesConfig(_Model):
    soak: Duration | None = None


class EnvironmentConfig(_Model):
    upstream: str | None = None
    overlay: str | None = None
    cluster: ClusterConfig = ClusterConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    sync: SyncConfig = SyncConfig()
    secrets: SecretsConfig = SecretsConfig()
    gates: GatesConfig = GatesConfig()


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

    def env(self, name: str) -> Environment:
        from promote.errors import UsageError

        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(self.pipeline()) or "none"
            raise UsageError(
                f"unknown environment {name!r}; this project defines: {known} "
                f"(one file per environment in {ENV_DIR}/)."
            ) from None

    def pipeline(self) -> list[str]:
        return pipeline_order({n: e.upstream for n, e in self.environments.items()})

    def downstream(self, name: str) -> list[str]:
        return [n for n in self.pipeline() if self.environments[n].upstream == name]

    def relpath(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


# --- loading --------------------------------------------------------------------------------


def _read_yaml(path: Path, display: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{display}: cannot read the file ({exc.strerror}).") from exc
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(
            f"{display}:{line}: not valid YAML ({exc.problem}); fix the syntax at that line."
        ) from exc


def _line_of(data: Any, loc: Iterable[int | str]) -> int | None:
    """Best line number (1-based) for a pydantic error location in ruamel round-trip data."""
    node, line = data, None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


_FIXES = {
    "extra_forbidden": "remove it or check its spelling",
    "missing": "add it",
    "literal_error": "use one of the allowed values",
}


def _describe(exc: ValidationError, display: str, data: Any, model: type[BaseModel]) -> str:
    parts = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(data, loc)
        where = f"{display}:{line}" if line else display
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            msg = f"unknown field {loc[-1]!r}" + (
                f"; allowed here: {', '.join(allowed)}" if allowed else ""
            )
        fix = _FIXES.get(err["type"], "correct the value")
        parts.append(f"{where}: {field}: {msg}; {fix}.")
    return " ".join(parts)


def _allowed_keys(model: type[BaseModel], loc: list[int | str]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {f.alias or n: f for n, f in current.model_fields.items()}
        field = fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if nxt is None:
            for cand in candidates:
                for sub in getattr(cand, "__args__", ()):
                    if isinstance(sub, type) and issubclass(sub, BaseModel):
                        nxt = sub
        if nxt is None:
            return []
        current = nxt
    return sorted(f.alias or n for n, f in current.model_fields.items())


def _validate(model: type[_Model], data: Any, display: str) -> Any:
    if data is None:
        data = CommentedMap()
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{display}: expected a mapping of settings at the top level, found "
            f"{type(data).__name__}; write `key: value` lines."
        )
    try:
        return model.model_validate(_plain(data))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, display, data, model)) from None


def _plain(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    return data


def load_project(root: Path | str) -> Project:
    """Load the project at ``root``; raise ConfigError naming file, line, field and fix."""
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
        project_cfg = _validate(ProjectConfig, _read_yaml(project_file, PROJECT_FILE), PROJECT_FILE)
    envs: dict[str, Environment] = {}
    raw: dict[str, Any] = {}
    for path in sorted(env_dir.glob("*.yaml")) if env_dir.is_dir() else []:
        name = path.stem
        display = f"{ENV_DIR}/{path.name}"
        if not _ENV_NAME.match(name):
            raise ConfigError(
                f"{display}: {name!r} is not a valid environment name; rename the file to "
                "lower-case letters, digits and dashes (e.g. prod.yaml)."
            )
        data = _read_yaml(path, display)
        raw[name] = data
        cfg = _validate(EnvironmentConfig, data, display)
        overlay = root / (cfg.overlay or f"overlays/{name}")
        envs[name] = Environment(name=name, file=path, config=cfg, overlay_dir=overlay)
    if not envs:
        raise ConfigError(
            f"{ENV_DIR}/: no environment files; add one YAML file per environment, "
            f"e.g. {ENV_DIR}/dev.yaml (`promote init` writes dev, staging and prod)."
        )
    _check_semantics(envs, raw, project_cfg)
    return Project(root=root, config=project_cfg, environments=envs)


def _check_semantics(
    envs: dict[str, Environment], raw: dict[str, Any], project_cfg: ProjectConfig
) -> None:
    for name, env in envs.items():
        display = f"{ENV_DIR}/{name}.yaml"
        cfg = env.config
        if cfg.upstream is not None and cfg.upstream not in envs:
            line = _line_of(raw[name], ["upstream"])
            raise ConfigError(
                f"{display}:{line}: upstream: {cfg.upstream!r} names no environment "
                f"(known: {', '.join(sorted(envs))}); set it to one of them or remove it."
            )
        if cfg.upstream == name:
            raise ConfigError(
                f"{display}: upstream: an environment cannot be its own upstream; "
                "name the environment promotions come from, or remove the field."
            )
        if not env.overlay_dir.is_dir():
            field = "overlay" if cfg.overlay else "overlay (default overlays/<env>)"
            rel = cfg.overlay or f"overlays/{name}"
            raise ConfigError(
                f"{display}: {field}: the folder {rel}/ does not exist; create it with a "
                "kustomization.yaml, or point `overlay:` at the right folder."
            )
        appr = cfg.approvals
        if appr.required > len(appr.approvers):
            line = _line_of(raw[name], ["approvals", "required"])
            where = f"{display}:{line}" if line else display
            raise ConfigError(
                f"{where}: approvals.required is {appr.required} but only "
                f"{len(appr.approvers)} approvers are listed; add approvers or lower it."
            )
        if len(set(appr.approvers)) != len(appr.approvers):
            raise ConfigError(
                f"{display}: approvals.approvers lists a name twice; list each approver once."
            )
    for name in envs:
        seen = [name]
        cur = envs[name].upstream
        while cur is not None:
            if cur in seen:
                cycle = " -> ".join([*seen[seen.index(cur) :], cur])
                raise ConfigError(
                    f"{ENV_DIR}/{name}.yaml: upstream: the upstreams form a cycle ({cycle}); "
                    "one environment (usually dev) must have no upstream."
                )
            seen.append(cur)
            cur = envs[cur].upstream
    for env_name in project_cfg.policy.allow_latest:
        if env_name not in envs:
            raise ConfigError(
                f"{PROJECT_FILE}: policy.allowLatest: {env_name!r} names no environment; "
                f"use one of {', '.join(sorted(envs))}."
            )


def pipeline_order(upstreams: Mapping[str, str | None]) -> list[str]:
    """Environments in promotion order: roots first, then each downstream (breadth first)."""
    order: list[str] = []
    frontier = sorted(n for n, u in upstreams.items() if u is None)
    while frontier:
        order.extend(frontier)
        frontier = sorted(n for n, u in upstreams.items() if u in frontier and n not in order)
    return order
