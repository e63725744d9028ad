"""An environment's secret files: ``overlays/<env>/secrets/<name>.sops.yaml``.

Orchestration for ``promote secrets set|list|check``. ``set`` decrypts an existing file in
memory (sops via stdin/stdout), changes the given keys, and re-encrypts through sops' stdin with
``--filename-override`` so ``.sops.yaml``'s rule for the environment applies; the file on disk
only ever holds ciphertext. ``list`` and ``check`` read names and KEYS from rendered objects,
which need no key at all. Keys are written sorted, ``data`` before ``stringData``, because
``kustomize build`` sorts them and the MAC covers encrypted values in document order.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from promote import config
from promote.errors import ConfigError, KeyFileError, SopsError, UsageError
from promote.kustomize import folder, overlay, render, sandbox
from promote.secrets import files, sops, values
from promote.secrets.authoring import keys, parity, rekey

log = logging.getLogger(__name__)

SECRETS_DIR = "secrets"
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a DNS subdomain
KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")  # what a Secret accepts as a data key


class Assignment:
    """One ``KEY=...`` of ``secrets set``: the key and its value, which ``repr`` never shows."""

    __slots__ = ("key", "value")

    def __init__(self, key: str, value: bytes) -> None:
        self.key = key
        self.value = value

    def __repr__(self) -> str:
        return f"Assignment({self.key!r}, <redacted>)"


def parse_assignments(
    args: Sequence[str], *, read_stdin: Callable[[], bytes], read_file: Callable[[Path], bytes]
) -> list[Assignment]:
    """Parse ``KEY=VALUE``, ``KEY=@FILE`` (the file's bytes) and ``KEY=-`` (stdin).

    For ``-`` one trailing newline is dropped (``echo value | ...``); ``@FILE`` is taken as is.
    Messages name the argument's position and key, never what follows the ``=``.
    """
    out: list[Assignment] = []
    seen: set[str] = set()
    stdin_used = False
    for i, arg in enumerate(args, start=1):
        key, sep, rest = arg.partition("=")
        if not sep or not KEY.match(key):
            raise UsageError(
                f"argument {i} is not KEY=VALUE, KEY=@FILE or KEY=-; keys may hold letters, "
                "digits, '-', '_' and '.' (the argument is not shown, it may be a value)."
            )
        if key in seen:
            raise UsageError(f"key {key!r} is given twice; give each key once.")
        seen.add(key)
        if rest == "-":
            if stdin_used:
                raise UsageError(f"{key}=-: only one key can read its value from stdin.")
            stdin_used = True
            value = read_stdin()
            value = value[:-1] if value.endswith(b"\n") else value
        elif rest.startswith("@"):
            path = Path(rest[1:]).expanduser()
            try:
                value = read_file(path)
            except OSError as exc:
                raise UsageError(f"{key}=@{path}: cannot read the file ({exc.strerror}).") from None
        else:
            value = rest.encode("utf-8")
        out.append(Assignment(key, value))
    if not out:
        raise UsageError("give at least one KEY=VALUE, KEY=@FILE or KEY=- to set.")
    return out


@dataclass(frozen=True, slots=True)
class SetResult:
    env: str
    name: str
    file: str
    created: bool
    keys: tuple[str, ...]
    changed: tuple[str, ...]
    resource_added: bool


def secret_path(env: config.Environment, name: str) -> Path:
    return env.overlay_dir / SECRETS_DIR / f"{name}.sops.yaml"


def _check_sops_config(project: config.Project, environ: Mapping[str, str]) -> None:
    all_keys = rekey.read_all_keys(project, environ)
    rules = [
        (keys.path_regex(project, project.env(n)), k.recipients)
        for n, k in all_keys.items()
        if k.recipients
    ]
    path = project.root / keys.SOPS_CONFIG
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if current != keys.render_sops_config(rules):
        raise ConfigError(
            f"{keys.SOPS_CONFIG}: does not match keys/ (missing or out of date); run "
            "`promote keys sync` to regenerate it and re-wrap the files."
        )


def set_secret(
    project: config.Project,
    env_name: str,
    name: str,
    assignments: Sequence[Assignment],
    *,
    environ: Mapping[str, str],
    binary: Path | None = None,
) -> SetResult:
    """Create or update one Secret file of ``env_name`` and list it in the overlay's resources."""
    env = project.env(env_name)
    env_keys = _writable_keys(project, env_name, name, environ)
    _check_sops_config(project, environ)
    adapter = rekey.env_sops(project, env_name, env_keys, environ=environ, binary=binary)
    path = secret_path(env, name)
    rel = project.relpath(path)
    created = not path.exists()
    doc = _new_secret(name) if created else _decrypt_existing(adapter, path, rel, name)
    data, string_data = _assign(doc, assignments)
    body = {k: v for k, v in doc.items() if k not in ("data", "stringData", "sops")}
    if data:
        body["data"] = dict(sorted(data.items()))
    if string_data:
        body["stringData"] = dict(sorted(string_data.items()))
    plaintext = values.Plaintext(yaml.safe_dump(body, sort_keys=False, allow_unicode=True).encode())
    ciphertext = adapter.encrypt(
        plaintext, filename=path, config=project.root / keys.SOPS_CONFIG, cwd=project.root
    )
    _write_atomic(path, ciphertext)
    log.info("wrote %s (keys: %s)", rel, ", ".join(a.key for a in assignments))
    return SetResult(
        env_name,
        name,
        rel,
        created,
        tuple(sorted({*data, *string_data})),
        tuple(a.key for a in assignments),
        _add_resource(project, env, name),
    )


def _writable_keys(
    project: config.Project, env_name: str, name: str, environ: Mapping[str, str]
) -> keys.EnvKeys:
    """The environment's keys, once the Secret name is valid and there is a recipient."""
    if not NAME.match(name):
        raise UsageError(
            f"{name!r} is not a valid Secret name; use lower-case letters, digits, '-' and '.'."
        )
    env_keys = keys.read_keys(project, env_name, environ=environ)
    if not env_keys.recipients:
        raise KeyFileError(
            f"keys/{env_name}/ lists no recipient, so nothing could decrypt the file; run "
            f"`promote keys init {env_name}` (or `promote keys add {env_name} RECIPIENT`) first."
        )
    return env_keys


def _new_secret(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque"}


def _decrypt_existing(adapter: sops.Sops, path: Path, rel: str, name: str) -> dict[str, Any]:
    """The file's Secret, decrypted in memory (sops stdin/stdout); it must be Secret ``name``."""
    plain = adapter.decrypt(path.read_bytes(), what=rel)
    doc: dict[str, Any] = json.loads(plain.reveal())
    if doc.get("kind") != "Secret" or (doc.get("metadata") or {}).get("name") != name:
        raise SopsError(f"{rel}: is not the Secret {name!r}; fix or remove the file.")
    return doc


def _assign(
    doc: dict[str, Any], assignments: Sequence[Assignment]
) -> tuple[dict[str, str], dict[str, str]]:
    """(data, stringData) with ``assignments`` applied: text in stringData, binary in data."""
    data: dict[str, str] = dict(doc.get("data") or {})
    string_data: dict[str, str] = dict(doc.get("stringData") or {})
    for a in assignments:
        try:
            string_data[a.key] = a.value.decode("utf-8")
            data.pop(a.key, None)
        except UnicodeDecodeError:  # binary: kept exactly, base64 in data
            data[a.key] = base64.b64encode(a.value).decode("ascii")
            string_data.pop(a.key, None)
    return data, string_data


def _add_resource(project: config.Project, env: config.Environment, name: str) -> bool:
    """List the Secret's file in the overlay's resources; True if it was not listed yet."""
    resource = f"{SECRETS_DIR}/{name}.sops.yaml"
    kz = folder.kustomization_path(env.overlay_dir)
    before = kz.read_text(encoding="utf-8")
    after = overlay.add_resource(before, resource, project.relpath(kz))
    if after != before:
        kz.write_text(after, encoding="utf-8")
    return after != before


def _write_atomic(path: Path, ciphertext: bytes) -> None:
    """Replace ``path`` with ciphertext in one rename (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(ciphertext)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- reading without keys ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecretInfo:
    name: str
    keys: tuple[str, ...]
    encrypted: bool
    vault_refs: Mapping[str, str] = field(default_factory=dict)  # key -> reference
    file: str | None = None


def list_secrets(
    project: config.Project, env_name: str, *, kustomize: render.Kustomize | None = None
) -> list[SecretInfo]:
    """Names, keys and vault references of an environment's Secrets, from rendered objects."""
    env = project.env(env_name)
    objects = (kustomize or render.Kustomize()).build(
        env.overlay_dir, sandbox=sandbox.for_project(project)
    )
    origin = files.sources(project, env)
    out = []
    for name, shape in sorted(parity.secret_shapes(objects).items()):
        refs = dict(sorted(_pair(r) for r in shape.vault_refs))
        out.append(
            SecretInfo(name, tuple(sorted(shape.keys)), shape.encrypted, refs, origin.get(name))
        )
    return out


def _pair(text: str) -> tuple[str, str]:
    key, _, ref = text.partition("=")
    return key, ref


def check_parity(
    project: config.Project, source: str, target: str, *, kustomize: render.Kustomize | None = None
) -> parity.ParityResult:
    """Every Secret and key ``source`` defines must exist in ``target`` (no decryption)."""
    src, dst = project.env(source), project.env(target)
    kz = kustomize or render.Kustomize()
    box = sandbox.for_project(project)
    before, after = kz.build(src.overlay_dir, sandbox=box), kz.build(dst.overlay_dir, sandbox=box)
    return parity.check_parity(source, before, target, after)
