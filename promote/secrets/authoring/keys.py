"""An environment's keys: ``keys/<env>/`` (public recipients), age identities, ``.sops.yaml``.

``keys/<env>/`` holds PUBLIC material only: ``age.txt`` (one ``age1...`` recipient a line),
``*.asc`` (armoured PGP public keys) and ``vault-transit.txt`` (transit key URIs). This module
reads and edits that folder, creates age identities with pyrage (the private half is written
OUTSIDE the working tree, mode 0600, and never read back by promote except to hand it to sops
through the process environment), and renders ``.sops.yaml`` from the folder: one creation rule
per environment. Re-wrapping files for new recipients is ``rekey.py``'s job.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pyrage import x25519

from promote import config
from promote.errors import KeyFileError, UsageError
from promote.secrets import gpg, sopsmeta

log = logging.getLogger(__name__)

KEYS_DIR = "keys"
AGE_FILE = "age.txt"
TRANSIT_FILE = "vault-transit.txt"
SOPS_CONFIG = ".sops.yaml"
ENCRYPTED_REGEX = "^(data|stringData)$"
AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")
# Private key material of the kinds keys/ could hold by mistake (patterns, never key data).
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def holds_private_material(text: str) -> bool:
    """An age identity, an armoured PGP private key, or a PEM private key."""
    return (
        "AGE-SECRET-KEY-" in text or gpg.holds_private_key(text) or bool(_PEM_PRIVATE.search(text))
    )


_REGEX_SPECIAL = re.compile(r"([.^$*+?()\[\]{}|\\])")


@dataclass(frozen=True, slots=True)
class EnvKeys:
    """The recipients of one environment as ``keys/<env>/`` lists them."""

    env: str
    directory: Path
    recipients: sopsmeta.Recipients
    pgp_files: Mapping[str, Path]  # fingerprint -> file that holds it


def keys_dir(project: config.Project, env: str) -> Path:
    return project.root / KEYS_DIR / env


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def read_keys(project: config.Project, env: str, *, environ: Mapping[str, str]) -> EnvKeys:
    """Read ``keys/<env>/``; raise KeyFileError naming the file and line of anything malformed."""
    directory = keys_dir(project, env)
    rel = project.relpath(directory)
    age: set[str] = set()
    for line in _lines(directory / AGE_FILE):
        if line.startswith("AGE-SECRET-KEY-"):
            raise KeyFileError(
                f"{rel}/{AGE_FILE}: holds an age PRIVATE key; delete that line (and rotate: the "
                "key may be in Git history), keep only `age1...` recipients."
            )
        if not AGE_RECIPIENT.match(line):
            raise KeyFileError(
                f"{rel}/{AGE_FILE}: {line[:12]}... is not an age recipient; write one `age1...` "
                "public key per line (`promote keys add ENV age1...`)."
            )
        age.add(line)
    transit: set[str] = set()
    for line in _lines(directory / TRANSIT_FILE):
        uri = sopsmeta.normalise_transit_uri(line)
        if uri is None:
            raise KeyFileError(
                f"{rel}/{TRANSIT_FILE}: {line!r} is not a Vault transit key URI; write "
                "`https://VAULT:8200/v1/transit/keys/NAME`."
            )
        transit.add(uri)
    pgp_files: dict[str, Path] = {}
    for path in sorted(directory.glob("*.asc")) if directory.is_dir() else []:
        text = path.read_text(encoding="utf-8", errors="replace")
        for fp in gpg.public_fingerprints(text, display=project.relpath(path), environ=environ):
            pgp_files[fp] = path
    recipients = sopsmeta.Recipients(frozenset(age), frozenset(pgp_files), frozenset(transit))
    return EnvKeys(env, directory, recipients, pgp_files)


def private_material(directory: Path) -> list[Path]:
    """Files under ``directory`` that contain private key material (never allowed in keys/)."""
    found = []
    for path in (
        sorted(p for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else []
    ):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if holds_private_material(text):
            found.append(path)
    return found


# --- editing keys/<env>/ -----------------------------------------------------------------------


def recipient_kind(recipient: str) -> str:
    """``age``, ``pgp`` (a fingerprint or a path to an armoured key) or ``vault-transit``."""
    if AGE_RECIPIENT.match(recipient):
        return "age"
    if sopsmeta.normalise_transit_uri(recipient):
        return "vault-transit"
    if gpg.FINGERPRINT.match(recipient) or recipient.endswith(".asc") or Path(recipient).is_file():
        return "pgp"
    raise UsageError(
        f"{recipient[:16]!r}... is not a recipient promote knows; give an age recipient "
        "(age1...), a PGP fingerprint (40 hex digits) or public key file (.asc), or a Vault "
        "transit URI (https://VAULT:8200/v1/transit/keys/NAME)."
    )


def _append_line(path: Path, line: str, header: str) -> bool:
    existing = _lines(path)
    if line in existing:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else header
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(text + line + "\n", encoding="utf-8")
    return True


def _remove_line(path: Path, match: str) -> bool:
    if not path.exists():
        return False
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [ln for ln in lines if ln.strip() != match]
    if len(kept) == len(lines):
        return False
    path.write_text("".join(kept), encoding="utf-8")
    return True


def add_recipient(
    project: config.Project, env: str, recipient: str, *, environ: Mapping[str, str]
) -> str:
    """Add a recipient to ``keys/<env>/``; return its label. Adding one twice changes nothing."""
    project.env(env)
    directory = keys_dir(project, env)
    kind = recipient_kind(recipient)
    if kind == "age":
        _append_line(directory / AGE_FILE, recipient, f"# age recipients of {env}\n")
        return recipient
    if kind == "vault-transit":
        uri = sopsmeta.normalise_transit_uri(recipient) or recipient
        _check_transit_address(project, env, uri)
        _append_line(directory / TRANSIT_FILE, uri, f"# Vault transit keys of {env}\n")
        return f"vault {uri}"
    path = Path(recipient).expanduser()
    if path.is_file():
        armored = path.read_text(encoding="utf-8", errors="replace")
    else:
        armored = gpg.export_public(recipient, environ=environ)
    fps = gpg.public_fingerprints(armored, display=str(path), environ=environ)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{fps[0]}.asc").write_text(armored, encoding="utf-8")
    return f"PGP {fps[0]}"


def _check_transit_address(project: config.Project, env: str, uri: str) -> None:
    vault = project.env(env).config.secrets.vault
    if vault and sopsmeta.normalise_address(vault.address) != sopsmeta.transit_address(uri):
        raise UsageError(
            f"{uri} is on {sopsmeta.transit_address(uri)} but environments/{env}.yaml "
            f"secrets.vault.address is {vault.address}; the agent only unwraps data keys with "
            "its configured Vault. Use a key on that Vault or change the address."
        )


def remove_recipient(
    project: config.Project, env: str, recipient: str, *, environ: Mapping[str, str]
) -> str:
    """Remove a recipient from ``keys/<env>/``; return its label (UsageError if absent)."""
    project.env(env)
    current = read_keys(project, env, environ=environ)
    directory = current.directory
    kind = recipient_kind(recipient)
    removed = False
    label = recipient
    if kind == "age":
        removed = _remove_line(directory / AGE_FILE, recipient)
    elif kind == "vault-transit":
        uri = sopsmeta.normalise_transit_uri(recipient) or recipient
        label = f"vault {uri}"
        removed = any(
            _remove_line(directory / TRANSIT_FILE, line)
            for line in _lines(directory / TRANSIT_FILE)
            if sopsmeta.normalise_transit_uri(line) == uri
        )
    else:
        fp = recipient.removeprefix("0x").upper()
        if Path(recipient).is_file():
            text = Path(recipient).read_text(encoding="utf-8", errors="replace")
            fp = gpg.public_fingerprints(text, display=recipient, environ=environ)[0]
        label = f"PGP {fp}"
        if fp in current.pgp_files:
            current.pgp_files[fp].unlink()
            removed = True
    if not removed:
        known = ", ".join(current.recipients.labels()) or "none"
        raise UsageError(
            f"{recipient} is not a recipient of {env} (keys/{env}/ lists: {known}); "
            "nothing was changed."
        )
    return label


# --- age identities ----------------------------------------------------------------------------


def default_identity_path(project: config.Project, env: str, environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/promote/keys/<repo-name>/<env>.agekey`` (default ~/.config/...)."""
    base = environ.get("XDG_CONFIG_HOME") or str(
        Path(environ.get("HOME") or Path.home()) / ".config"
    )
    return Path(base) / "promote" / "keys" / project.root.name / f"{env}.agekey"


def create_age_identity(
    project: config.Project, env: str, *, out: Path | None, environ: Mapping[str, str]
) -> tuple[Path, str]:
    """Generate an age identity; write its private half to ``out`` (0600); return the recipient.

    The private file must lie outside the working tree: a key inside it is one `git add .`
    away from being committed for good.
    """
    project.env(env)
    path = (out or default_identity_path(project, env, environ)).expanduser().absolute()
    resolved = path.parent.resolve() / path.name
    if resolved.is_relative_to(project.root.resolve()):
        raise UsageError(
            f"{path}: inside the repository's working tree; a private key there could be "
            "committed. Choose a path outside it (default ~/.config/promote/keys/...)."
        )
    if path.exists():
        raise UsageError(
            f"{path}: already exists; promote never overwrites a private key. Use it, move it "
            "away, or pass --out with another path."
        )
    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = f"# created: {created}\n# public key: {recipient}\n{identity}\n"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    log.info("wrote the age identity of %s to %s", env, path)
    _append_line(keys_dir(project, env) / AGE_FILE, recipient, f"# age recipients of {env}\n")
    return path, recipient


def identity_environ(
    project: config.Project, env: str, environ: Mapping[str, str]
) -> dict[str, str]:
    """``environ`` plus the default identity of ``env`` (if it exists) for the CLI's sops calls.

    The agent does not use this: it gets its key from its own environment only.
    """
    out = dict(environ)
    path = default_identity_path(project, env, environ)
    if not path.is_file():
        return out
    if "SOPS_AGE_KEY_FILE" not in out:
        out["SOPS_AGE_KEY_FILE"] = str(path)
    elif out.get("SOPS_AGE_KEY_FILE") != str(path):
        # sops reads SOPS_AGE_KEY and SOPS_AGE_KEY_FILE together; keep the user's file.
        extra = path.read_text(encoding="utf-8")
        out["SOPS_AGE_KEY"] = (out.get("SOPS_AGE_KEY", "") + "\n" + extra).strip()
    return out


# --- .sops.yaml ----------------------------------------------------------------------------------


def path_regex(project: config.Project, env: config.Environment) -> str:
    overlay = project.relpath(env.overlay_dir).replace(os.sep, "/")
    return _REGEX_SPECIAL.sub(r"\\\1", overlay) + r"/.*\.sops\.yaml$"


def render_sops_config(rules: list[tuple[str, sopsmeta.Recipients]]) -> str:
    """The text of ``.sops.yaml``: one creation rule per (path regex, recipients), pure."""
    out = []
    for regex, rec in rules:
        rule: dict[str, object] = {
            "path_regex": regex,
            "encrypted_regex": ENCRYPTED_REGEX,
            "mac_only_encrypted": True,
        }
        if rec.age:
            rule["age"] = ",".join(sorted(rec.age))
        if rec.pgp:
            rule["pgp"] = ",".join(sorted(rec.pgp))
        if rec.vault_transit:
            rule["hc_vault_transit_uri"] = ",".join(sorted(rec.vault_transit))
        out.append(rule)
    header = (
        "# GENERATED by `promote keys sync` from keys/<env>/; do not edit by hand.\n"
        "# One creation rule per environment: its files are encrypted to its keys only.\n"
    )
    return header + yaml.safe_dump({"creation_rules": out}, sort_keys=False, width=10_000)


def write_sops_config(project: config.Project, keys: Mapping[str, EnvKeys]) -> tuple[Path, bool]:
    """Write ``.sops.yaml`` for environments that have recipients; return (path, changed)."""
    rules = [
        (path_regex(project, project.env(name)), keys[name].recipients)
        for name in project.pipeline()
        if name in keys and keys[name].recipients
    ]
    path = project.root / SOPS_CONFIG
    text = render_sops_config(rules)
    before = path.read_text(encoding="utf-8") if path.exists() else None
    if before != text:
        path.write_text(text, encoding="utf-8")
    return path, before != text
