"""Bring encrypted files in line with ``keys/``: ``.sops.yaml``, re-wrapping and rotation.

Orchestration for ``promote keys ...`` and ``promote secrets rotate``: it reads ``keys/<env>/``
(``keys.py``), writes ``.sops.yaml``, and asks sops (``sops.py``) to re-wrap each file's data key
for its environment's recipients (``updatekeys``) or to give it a new data key (``rotate``).
Both need a private key that can already decrypt the file; a file that cannot be done is left
unchanged and reported with the keys that could do it, and the rest goes on.
No plaintext passes through here: sops works on the files in place.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from promote import config
from promote.errors import PolicyBlocked, SopsError, VaultError
from promote.secrets import files, gpg, sops, sopsmeta
from promote.secrets.authoring import keys

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FileResult:
    env: str
    file: str  # relative to the repository
    action: str  # "current" | "updated" | "rotated" | "blocked"
    reason: str = ""
    needs: tuple[str, ...] = ()  # a private key of one of these could do it

    @property
    def blocked(self) -> bool:
        return self.action == "blocked"

    def __str__(self) -> str:
        text = f"{self.file}: left unchanged; {self.reason.rstrip('.')}"
        if self.needs:
            text += f"; it needs the private key of one of: {', '.join(self.needs)}"
        return text


@dataclass(frozen=True, slots=True)
class RekeyReport:
    config_file: str
    config_changed: bool
    files: tuple[FileResult, ...] = field(default_factory=tuple)

    @property
    def blocked(self) -> list[FileResult]:
        return [f for f in self.files if f.blocked]


def env_sops(
    project: config.Project,
    env: str,
    env_keys: keys.EnvKeys,
    *,
    environ: Mapping[str, str],
    binary: Path | None = None,
) -> sops.Sops:
    """A sops adapter with this environment's key material (CLI side: includes the default
    identity file of ``promote keys init``), after importing its PGP public keys."""
    env_environ = keys.identity_environ(project, env, environ)
    for fp, path in env_keys.pgp_files.items():
        gpg.import_public(
            path.read_text(encoding="utf-8"),
            display=f"{project.relpath(path)} ({fp})",
            environ=env_environ,
        )
    return sops.Sops(binary, env=sops.sops_env(env_environ))


def read_all_keys(project: config.Project, environ: Mapping[str, str]) -> dict[str, keys.EnvKeys]:
    return {name: keys.read_keys(project, name, environ=environ) for name in project.pipeline()}


def sync(
    project: config.Project,
    *,
    environ: Mapping[str, str],
    envs: Sequence[str] | None = None,
    rotate: Collection[str] = (),
    binary: Path | None = None,
) -> RekeyReport:
    """Regenerate ``.sops.yaml`` from ``keys/``, then re-wrap every file whose recipients differ.

    Environments in ``rotate`` also get a new data key for each file (after a recipient was
    removed, since it may have seen the old data key).
    """
    all_keys = read_all_keys(project, environ)
    config_path, changed = keys.write_sops_config(project, all_keys)
    results: list[FileResult] = []
    for name in envs or project.pipeline():
        env = project.env(name)
        paths = files.secret_files(env)
        if not paths:
            continue
        adapter = env_sops(project, name, all_keys[name], environ=environ, binary=binary)
        for path in paths:
            results.append(
                _sync_file(project, env, path, all_keys[name], adapter, config_path, name in rotate)
            )
    return RekeyReport(project.relpath(config_path), changed, tuple(results))


def rotate_env(
    project: config.Project,
    env_name: str,
    *,
    environ: Mapping[str, str],
    binary: Path | None = None,
) -> RekeyReport:
    """A new data key for every file of one environment (``promote secrets rotate``)."""
    project.env(env_name)
    return sync(project, environ=environ, envs=[env_name], rotate={env_name}, binary=binary)


def _sync_file(
    project: config.Project,
    env: config.Environment,
    path: Path,
    env_keys: keys.EnvKeys,
    adapter: sops.Sops,
    config_path: Path,
    rotate: bool,
) -> FileResult:
    rel = project.relpath(path)
    doc = files.load_document(path)
    if not isinstance(doc.get("sops"), dict):
        return FileResult(env.name, rel, "blocked", "it is not encrypted (no sops metadata)")
    current = sopsmeta.file_recipients(doc)
    wanted = env_keys.recipients
    if not wanted:
        return FileResult(
            env.name,
            rel,
            "blocked",
            f"keys/{env.name}/ lists no recipient (run `promote keys init {env.name}`)",
        )
    action = "current"
    try:
        if current != wanted:
            adapter.update_keys(path, config=config_path, cwd=project.root, what=rel)
            action = "updated"
            log.info("re-wrapped the data key of %s for %s", rel, ", ".join(wanted.labels()))
        if rotate:
            adapter.rotate(path, cwd=project.root, what=rel)
            action = "rotated"
            log.info("rotated the data key of %s", rel)
    except sops.NoKeyError as exc:
        reason = exc.message.removeprefix(f"{rel}: ")
        return FileResult(env.name, rel, "blocked", reason, tuple(current.labels()))
    except (SopsError, VaultError) as exc:
        return FileResult(env.name, rel, "blocked", exc.message.removeprefix(f"{rel}: "))
    return FileResult(env.name, rel, action)


def blocked_error(report: RekeyReport, what: str) -> PolicyBlocked:
    """The exit-3 error for a report with files left unchanged."""
    return PolicyBlocked(
        f"{what}: {len(report.blocked)} file(s) left unchanged (each is listed with the reason "
        "and, when a private key is missing, the keys that could do it).",
        hint="Run it again where a key of that environment is available (SOPS_AGE_KEY_FILE, "
        "GNUPGHOME or VAULT_TOKEN), e.g. on the environment's agent or by its key holder.",
        problems=[str(f) for f in report.blocked],
    )
