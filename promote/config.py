"""Load and validate ``promote.yaml`` and ``environments/*.yaml``.

This module is the only reader of our YAML configuration. It turns the files into frozen
dataclasses and turns every problem into one :class:`~promote.errors.ConfigError`
paragraph that names the file, the line (when YAML knows it), the field and the fix.
A small generic validator, driven by the dataclasses' fields and type hints, maps camelCase
YAML keys (or the snake_case field names) onto them; PyYAML's node tree gives the lines.
No pydantic or ruamel: the CLI imports this module on every start, so it must stay cheap.
It does no I/O beyond reading those files and checking that overlay folders exist.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from promote.errors import ConfigError

PROJECT_FILE = "promote.yaml"
ENV_DIR = "environments"
_ENV_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
class ProjectConfig:
    main_branch: str = "main"
    remote: str = "origin"
    forge: ForgeConfig = field(default_factory=ForgeConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)


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


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentConfig:
    upstream: str | None = None
    overlay: str | None = None
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    approvals: ApprovalsConfig = field(default_factory=ApprovalsConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)


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


# --- reading YAML ---------------------------------------------------------------------------


def _read_yaml(path: Path, display: str) -> tuple[Any, yaml.Node | None]:
    """The file's plain data and its PyYAML node tree (for line numbers), from one parse."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{display}: cannot read the file ({exc.strerror}).") from exc
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:  # an empty file
            return None, None
        _refuse_duplicate_keys(node, set())
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(
            f"{display}:{line}: not valid YAML ({exc.problem}); fix the syntax at that line."
        ) from exc
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: yaml.Node, seen: set[int]) -> None:
    """PyYAML silently keeps the last of two equal keys; a config file must not have them."""
    if id(node) in seen:  # an alias of a node already checked
        return
    seen.add(id(node))
    keys: set[str] = set()
    for item in node.value if isinstance(node, yaml.CollectionNode) else []:
        key, value = item if isinstance(node, yaml.MappingNode) else (None, item)
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in keys:
                raise yaml.constructor.ConstructorError(
                    problem=f"found duplicate key {key.value!r}", problem_mark=key.start_mark
                )
            keys.add(key.value)
        _refuse_duplicate_keys(value, seen)


def _line_of(node: yaml.Node | None, loc: Iterable[int | str]) -> int | None:
    """Best line number (1-based) for a field location: that of the deepest key or item found."""
    line = None
    for part in loc:
        key = None
        if isinstance(node, yaml.MappingNode):
            pairs = [(k, v) for k, v in node.value if getattr(k, "value", None) == str(part)]
            key, node = pairs[-1] if pairs else (None, None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            key = node = node.value[part] if part < len(node.value) else None
        if key is None:
            break
        line = key.start_mark.line + 1
    return line


# --- validating -----------------------------------------------------------------------------
# Generic over the dataclasses above: driven by dataclasses.fields() and the type hints, which
# are resolved once per class; a field's ``metadata["ge"]`` is a lower bound. Each problem becomes
# (location, message, fix); the location is the path of YAML keys and list indices as written
# in the file (``sync.ignore.0.paths``).

_T = TypeVar("_T")
_Loc = tuple[int | str, ...]
_Error = tuple[_Loc, str, str]
_CORRECT = "correct the value"
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
_INT = re.compile(r"\s*[-+]?\d+\s*")


@functools.cache
def _fields(cls: type) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """camelCase YAML key -> (field, resolved type hint), in definition order."""
    hints = typing.get_type_hints(cls)
    return {_camel(f.name): (f, hints[f.name]) for f in dataclasses.fields(cls)}


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m[1].upper(), name)


def _build(cls: type[_T], data: Any, loc: _Loc, errors: list[_Error]) -> _T | None:
    """An instance of ``cls`` from a YAML mapping, or None after appending to ``errors``."""
    if not isinstance(data, Mapping):
        what = "null" if data is None else type(data).__name__
        errors.append((loc, f"Input should be a mapping (key: value lines), not {what}", _CORRECT))
        return None
    before, spec = len(errors), _fields(typing.cast(type, cls))
    data = {str(k): v for k, v in data.items()}
    kwargs: dict[str, Any] = {}
    used = {camel if camel in data else f.name for camel, (f, _) in spec.items()}
    for camel, (f, hint) in spec.items():
        key = camel if camel in data else f.name  # if both are given, the other is unknown
        if key in data:
            value = kwargs[f.name] = _convert(hint, data[key], (*loc, key), errors)
            if "ge" in f.metadata and isinstance(value, int) and value < f.metadata["ge"]:
                msg = f"Input should be greater than or equal to {f.metadata['ge']}"
                errors.append(((*loc, key), msg, _CORRECT))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(((*loc, camel), "Field required", "add it"))
    for key in [k for k in data if k not in used]:
        msg = f"unknown field {key!r}; allowed here: {', '.join(sorted(spec))}"
        errors.append(((*loc, key), msg, "remove it or check its spelling"))
    return cls(**kwargs) if len(errors) == before else None


def _convert(hint: Any, value: Any, loc: _Loc, errors: list[_Error]) -> Any:
    """``value`` as ``hint``, lax the way YAML is written by hand, or None after an error."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    fix = _CORRECT
    if origin in (types.UnionType, typing.Union):  # only `X | None` is used
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _convert(inner, value, loc, errors)
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), value, loc, errors)
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        *rest, last = (repr(a) for a in args)
        msg, fix = f"Input should be {', '.join(rest)} or {last}", "use one of the allowed values"
    elif origin is list:
        if isinstance(value, list):
            return [_convert(args[0], v, (*loc, i), errors) for i, v in enumerate(value)]
        msg = "Input should be a valid list"
    elif hint is timedelta:
        try:
            return parse_duration(value)
        except ValueError as exc:
            msg = str(exc)
    elif hint is bool:  # YAML true/false, and yes/no/on/off/1/0 as text or 0/1 as numbers
        text = str(value).strip().lower() if isinstance(value, str | int) else None
        if isinstance(value, bool) or text in _TRUE | _FALSE:
            return value if isinstance(value, bool) else text in _TRUE
        msg = "Input should be a valid boolean (true or false)"
    elif hint is int:  # an int (not a bool), a whole float or a string of digits
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INT.fullmatch(value):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        msg = "Input should be a valid integer"
    elif hint is str:  # only a string: quote numbers and booleans meant as text
        if isinstance(value, str):
            return value
        msg = "Input should be a valid string"
    else:
        raise TypeError(f"{hint!r}: no conversion for this config field type")
    errors.append((loc, msg, fix))
    return None


def _validate(cls: type[_T], data: Any, node: yaml.Node | None, display: str) -> _T:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{display}: expected a mapping of settings at the top level, found "
            f"{type(data).__name__}; write `key: value` lines."
        )
    errors: list[_Error] = []
    result = _build(cls, data, (), errors)
    if result is None:
        raise ConfigError(" ".join(_describe(display, node, *error) for error in errors))
    return result


def _describe(display: str, node: yaml.Node | None, loc: _Loc, msg: str, fix: str) -> str:
    line = _line_of(node, loc)
    where = f"{display}:{line}" if line else display
    return f"{where}: {'.'.join(map(str, loc)) or '(top level)'}: {msg}; {fix}."


# --- loading --------------------------------------------------------------------------------


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
        data, node = _read_yaml(project_file, PROJECT_FILE)
        project_cfg = _validate(ProjectConfig, data, node, PROJECT_FILE)
    envs: dict[str, Environment] = {}
    nodes: dict[str, yaml.Node | None] = {}
    for path in sorted(env_dir.glob("*.yaml")) if env_dir.is_dir() else []:
        name = path.stem
        display = f"{ENV_DIR}/{path.name}"
        if not _ENV_NAME.match(name):
            raise ConfigError(
                f"{display}: {name!r} is not a valid environment name; rename the file to "
                "lower-case letters, digits and dashes (e.g. prod.yaml)."
            )
        data, nodes[name] = _read_yaml(path, display)
        cfg = _validate(EnvironmentConfig, data, nodes[name], display)
        overlay = root / (cfg.overlay or f"overlays/{name}")
        envs[name] = Environment(name=name, file=path, config=cfg, overlay_dir=overlay)
    if not envs:
        raise ConfigError(
            f"{ENV_DIR}/: no environment files; add one YAML file per environment, "
            f"e.g. {ENV_DIR}/dev.yaml (`promote init` writes dev, staging and prod)."
        )
    _check_semantics(envs, nodes, project_cfg)
    return Project(root=root, config=project_cfg, environments=envs)


def _check_semantics(
    envs: dict[str, Environment], nodes: dict[str, yaml.Node | None], project_cfg: ProjectConfig
) -> None:
    for name, env in envs.items():
        display = f"{ENV_DIR}/{name}.yaml"
        cfg = env.config
        if cfg.upstream is not None and cfg.upstream not in envs:
            line = _line_of(nodes[name], ["upstream"])
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
            line = _line_of(nodes[name], ["approvals", "required"])
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
