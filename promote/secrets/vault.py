"""Vault (or OpenBao) KV v2 for ``vault:<mount>/<path>#<key>[@<version>]`` references.

Owns one outside system through hvac. Built from an environment's ``secrets.vault`` settings
and the process environment; logs in with a token (``VAULT_TOKEN``), AppRole (role id from the
settings, secret id from ``VAULT_SECRET_ID`` or the file named by ``VAULT_SECRET_ID_FILE``) or
Kubernetes auth (role from the settings, the service account token from
``VAULT_K8S_TOKEN_PATH``, default the in-cluster path). hvac's exceptions become ours here; a
response body is never passed on, and a value read is returned as
:class:`~promote.secrets.values.SecretText`, whose ``repr`` is redacted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import requests

from promote import config
from promote.cluster import validation
from promote.errors import ConfigError, VaultError, VaultUnavailable
from promote.secrets import values

log = logging.getLogger(__name__)

K8S_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@dataclass(frozen=True, slots=True)
class KvRef:
    mount: str
    path: str
    key: str
    version: int | None = None

    def __str__(self) -> str:
        version = f"@{self.version}" if self.version is not None else ""
        return f"vault:{self.mount}/{self.path}#{self.key}{version}"


def parse_ref(text: str) -> KvRef | None:
    match = validation.VAULT_REF.match(text)
    if not match:
        return None
    version = match["version"]
    return KvRef(match["mount"], match["path"], match["key"], int(version) if version else None)


class Vault:
    """A KV v2 reader for one environment. Thread safe: one login shared by all readers."""

    def __init__(
        self,
        settings: config.VaultConfig,
        *,
        environ: Mapping[str, str],
        timeout_s: float = 10,
        display: str = "secrets.vault",
    ) -> None:
        self.settings = settings
        self.address = settings.address.rstrip("/")
        self._environ = dict(environ)
        self._timeout_s = timeout_s
        self._display = display
        self._lock = threading.Lock()
        self._client: hvac.Client | None = None

    # --- login -----------------------------------------------------------------------------

    def _login(self) -> hvac.Client:
        s = self.settings
        client = hvac.Client(url=self.address, timeout=self._timeout_s, namespace=s.namespace)
        if s.auth == "token":
            token = self._environ.get("VAULT_TOKEN")
            if not token:
                raise VaultError(
                    f"{self._display}: auth is token but VAULT_TOKEN is not set; give the "
                    "agent (or your shell) a Vault token in VAULT_TOKEN."
                )
            client.token = token
            return client
        if not s.role:
            raise ConfigError(
                f"{self._display}.role: auth {s.auth} needs a role (the AppRole role_id or the "
                "Kubernetes auth role); add it."
            )
        with _mapped(self.address, f"{s.auth} login"):
            if s.auth == "approle":
                client.auth.approle.login(
                    role_id=s.role,
                    secret_id=self._secret_id(),
                    mount_point=s.auth_mount or "approle",
                )
            else:
                jwt = self._read(self._environ.get("VAULT_K8S_TOKEN_PATH", K8S_TOKEN_PATH))
                client.auth.kubernetes.login(
                    role=s.role, jwt=jwt, mount_point=s.auth_mount or "kubernetes"
                )
        log.debug("logged in to %s with %s auth", self.address, s.auth)
        return client

    def _secret_id(self) -> str | None:
        if self._environ.get("VAULT_SECRET_ID"):
            return self._environ["VAULT_SECRET_ID"]
        if self._environ.get("VAULT_SECRET_ID_FILE"):
            return self._read(self._environ["VAULT_SECRET_ID_FILE"])
        return None

    def _read(self, path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise VaultError(
                f"{self._display}: cannot read {path} for Vault login ({exc.strerror})."
            ) from None

    def client(self, *, fresh: bool = False) -> hvac.Client:
        with self._lock:
            if self._client is None or fresh:
                self._client = self._login()
            return self._client

    def token(self) -> str:
        """A token for sops' Vault transit calls (logs in first for AppRole/Kubernetes)."""
        return str(self.client().token)

    # --- reading ---------------------------------------------------------------------------

    def read_kv(self, ref: KvRef) -> values.SecretText:
        """The value of one key of a KV v2 secret; raise VaultError naming the reference."""
        try:
            data = self._read_version(ref)
        except VaultError as exc:
            if self.settings.auth == "token" or "refused" not in exc.message:
                raise
            data = self._read_version(ref, fresh=True)  # the login may have expired: once more
        if ref.key not in data:
            raise VaultError(
                f"{ref}: the secret {ref.mount}/{ref.path} has no key {ref.key!r} "
                f"(it has: {', '.join(sorted(data)) or 'none'}); add the key in Vault or fix "
                "the reference."
            )
        value = data[ref.key]
        return values.SecretText(value if isinstance(value, str) else _json(value))

    def _read_version(self, ref: KvRef, *, fresh: bool = False) -> dict[str, Any]:
        client = self.client(fresh=fresh)
        with _mapped(self.address, str(ref), ref=ref):
            response = client.secrets.kv.v2.read_secret_version(
                path=ref.path,
                version=ref.version,
                mount_point=ref.mount,
                raise_on_deleted_version=True,
            )
        data = ((response or {}).get("data") or {}).get("data")
        if not isinstance(data, dict):
            raise VaultError(f"{ref}: Vault returned no data for it; check the path and version.")
        return data


def _json(value: Any) -> str:
    return json.dumps(value)


@contextlib.contextmanager
def _mapped(address: str, what: str, ref: KvRef | None = None) -> Iterator[None]:
    """Translate hvac/requests exceptions into ours; never pass a response body on."""
    where = f"{what} (Vault {address})"
    try:
        yield
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise VaultUnavailable(
            f"{where}: Vault is unreachable ({type(exc).__name__}); the agent retries.",
            hint="Check that Vault runs and secrets.vault.address is right.",
        ) from None
    except hvac.exceptions.InvalidPath:
        path = f"{ref.mount}/{ref.path}" if ref else "the path"
        version = f" version {ref.version}" if ref and ref.version else ""
        mount = ref.mount if ref else "?"
        raise VaultError(
            f"{where}: {path}{version} does not exist in KV v2 mount {mount}; write it to "
            "Vault or fix the reference."
        ) from None
    except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
        if what.endswith(" login"):  # Kubernetes auth refuses an unbound account with 403
            raise VaultError(_login_refused(where)) from None
        raise VaultError(
            f"{where}: Vault refused the token (expired, revoked or without read permission "
            "on this path); renew the token or grant the policy."
        ) from None
    except (
        hvac.exceptions.VaultDown,
        hvac.exceptions.InternalServerError,
        hvac.exceptions.BadGateway,
        hvac.exceptions.RateLimitExceeded,
    ) as exc:
        raise VaultUnavailable(
            f"{where}: Vault is not serving ({type(exc).__name__}); the agent retries."
        ) from None
    except hvac.exceptions.InvalidRequest as exc:
        if what.endswith(" login"):
            raise VaultError(_login_refused(where)) from None
        raise VaultError(f"{where}: Vault answered {type(exc).__name__}.") from None
    except hvac.exceptions.VaultError as exc:
        raise VaultError(f"{where}: Vault answered {type(exc).__name__}.") from None


def _login_refused(where: str) -> str:
    return (
        f"{where}: Vault refused the login (wrong role, secret id or service account "
        "token); check secrets.vault.role and VAULT_SECRET_ID / VAULT_K8S_TOKEN_PATH."
    )


def from_environment(
    env: config.Environment, *, environ: Mapping[str, str], timeout_s: float = 10
) -> Vault | None:
    """The Vault of an environment: its ``secrets.vault``, else ``VAULT_ADDR`` with token auth."""
    settings = env.config.secrets.vault
    display = f"environments/{env.name}.yaml secrets.vault"
    if settings is None:
        address = environ.get("VAULT_ADDR")
        if not address:
            return None
        settings = config.VaultConfig(address=address)
        display = "VAULT_ADDR"
    return Vault(settings, environ=environ, timeout_s=timeout_s, display=display)
