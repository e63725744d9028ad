"""Resolve an environment's rendered Secrets into plaintext, in memory, at apply time.

The one module that knows both ``sops.py`` and ``vault.py``. It takes rendered objects (SOPS
Secrets still encrypted, ``vault:`` references still references) and returns new objects in
which every Secret carries its real values, as base64 ``data`` only (``stringData`` is merged
in, as the API server would, so the result compares cleanly with live Secrets), without the
``sops`` block. Nothing is written anywhere: objects go to ``sops decrypt`` on stdin and come
back on stdout. Results are cached in memory by a hash of the ciphertext (``secrets/cache.py``),
so a running agent decrypts an unchanged Secret once; cold misses are decrypted in parallel
(each is a sops process, so threads overlap them). One failure fails the whole call: no
partial result.

Key material comes from the process environment only (see :meth:`Resolver.for_environment`).
Decrypted values are :class:`~promote.secrets.values.SecretText`, whose ``repr`` is redacted, so
logging a resolved object (``%s`` of a dict uses ``repr`` of its values) shows no value.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from promote import config
from promote.cluster import validation
from promote.errors import ConfigError, PromoteError, SopsError
from promote.secrets import cache, files, redact, sops, sopsmeta, values, vault

log = logging.getLogger(__name__)

Object = dict[str, Any]
_SECTIONS = sopsmeta.SECTIONS


def _b64(text: str) -> values.SecretText:
    return values.SecretText(base64.b64encode(text.encode("utf-8")).decode("ascii"))


class _Sources:
    """Secret name -> file, computed only when an error needs it (scanning files costs time)."""

    def __init__(
        self,
        given: Mapping[str, str] | None,
        fn: Callable[[], Mapping[str, str]] | None,
    ) -> None:
        self._given, self._fn = given, fn

    def get(self, name: str) -> str | None:
        if self._given is None:
            try:
                self._given = self._fn() if self._fn else {}
            except PromoteError:
                self._given = {}
        return self._given.get(name)


class Resolver:
    """Resolves one environment's Secrets; build once per agent and keep it (it holds the cache).

    Thread safe. ``configured_vault`` is the only Vault address a SOPS file's transit key may
    name: sops takes the address from the file, so a changed file could otherwise send the
    agent's token to another server.
    """

    def __init__(
        self,
        *,
        env_name: str,
        sops_adapter: sops.Sops,
        vault_client: vault.Vault | None = None,
        configured_vault: str | None = None,
        workers: int | None = None,
        cache_size: int = 4096,
        sources: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.env_name = env_name
        self._sources_fn = sources
        self._sops = sops_adapter
        self._vault = vault_client
        self._configured = (
            sopsmeta.normalise_address(configured_vault)
            if configured_vault
            else (sopsmeta.normalise_address(vault_client.address) if vault_client else None)
        )
        self._workers = workers or max(2, 2 * (os.cpu_count() or 1))
        self._cache = cache.PlaintextCache(cache_size)
        self._lock = threading.Lock()
        self._transit_sops: sops.Sops | None = None

    @classmethod
    def for_environment(
        cls,
        env: config.Environment,
        *,
        environ: Mapping[str, str] | None = None,
        binary: Path | None = None,
        workers: int | None = None,
        sources: Callable[[], Mapping[str, str]] | None = None,
    ) -> Resolver:
        """A resolver whose key material is the process environment (the agent's way).

        Read: ``SOPS_AGE_KEY_FILE`` / ``SOPS_AGE_KEY`` (age), ``GNUPGHOME`` (PGP), and for Vault
        ``VAULT_TOKEN`` (token auth and sops transit), ``VAULT_SECRET_ID[_FILE]`` (AppRole),
        ``VAULT_K8S_TOKEN_PATH`` (Kubernetes auth), ``VAULT_ADDR`` (only when the environment
        file has no ``secrets.vault``), ``VAULT_NAMESPACE`` / ``VAULT_CACERT`` (TLS, namespace).
        """
        environ = os.environ if environ is None else environ
        client = vault.from_environment(env, environ=environ)
        adapter = sops.Sops(binary, env=sops.sops_env(environ))
        log.info("%s: decrypting SOPS Secrets with %s", env.name, adapter.describe_backend())
        return cls(
            env_name=env.name,
            sops_adapter=adapter,
            vault_client=client,
            workers=workers,
            sources=sources,
        )

    def cache_stats(self) -> cache.CacheStats:
        return self._cache.stats()

    def close(self) -> None:
        """Stop the persistent sops decryptors this resolver started (see ``sops.Sops``)."""
        with self._lock:
            transit, self._transit_sops = self._transit_sops, None
        for adapter in (self._sops, transit):
            if adapter is not None:
                adapter.close()

    # --- resolving -------------------------------------------------------------------------

    def resolve(
        self,
        objects: Sequence[Object],
        *,
        env: str | None = None,
        sources: Mapping[str, str] | None = None,
    ) -> list[Object]:
        """``objects`` with every Secret resolved; the input is not modified.

        Objects that need nothing are passed through as they are (not copied). ``env`` (the
        agent passes it) must be this resolver's environment. ``sources`` maps a Secret's name
        to the file it came from, for error messages; without it the ``sources`` callable given
        at construction is asked, and only when there is an error to report. Raises SopsError,
        VaultError or VaultUnavailable (retryable) naming the Secret, the file and the reason.
        """
        if env is not None and env != self.env_name:
            raise PromoteError(
                f"the secret resolver of {self.env_name} was asked to resolve {env}'s objects; "
                "build one resolver per environment."
            )
        started = time.monotonic()
        names = _Sources(sources, self._sources_fn)
        entries: dict[int, cache.Entry] = {}
        pending: dict[int, str] = {}  # index -> cache key
        for i, obj in enumerate(objects):
            if not validation.is_sops_object(obj):
                if redact.is_secret(obj):
                    entries[i] = cache.to_entry(obj)
                continue
            try:
                if not redact.is_secret(obj):
                    raise SopsError(
                        f"{self._name(obj)}: only Secrets may hold SOPS-encrypted values; move "
                        "them into a Secret (`promote secrets set`)."
                    )
                self._check_transit(obj)
            except PromoteError as exc:
                raise self._sourced(exc, obj, names) from None
            key = cache.ciphertext_hash(self.env_name, obj)
            cached = self._cache.get(key)
            if cached is not None:
                entries[i] = cached
            else:
                pending[i] = key
        if pending:
            self._decrypt_all(objects, pending, entries, names)
        out = self._assemble(objects, entries, names)
        log.debug(
            "resolved %d Secret(s) of %s (%d decrypted, %d from cache) in %.3fs",
            len(entries),
            self.env_name,
            len(pending),
            len(entries) - len(pending),
            time.monotonic() - started,
            extra={"env": self.env_name},
        )
        return out

    def _name(self, obj: Object) -> str:
        return f"{self.env_name}: {validation.object_ref(obj)}"

    def _sourced(self, exc: PromoteError, obj: Object, names: _Sources) -> PromoteError:
        """The same error with the Secret's file named after the Secret (when known)."""
        source = names.get(str((obj.get("metadata") or {}).get("name", "")))
        what = self._name(obj)
        if not source or what not in exc.message:
            return exc
        message = exc.message.replace(what, f"{what} (from {source})", 1)
        return type(exc)(message, hint=exc.hint)

    def _check_transit(self, obj: Object) -> None:
        addresses = sopsmeta.transit_addresses(obj)
        wrong = sorted(a for a in addresses if a != self._configured)
        if wrong:
            raise SopsError(
                f"{self._name(obj)}: its Vault transit key is on {', '.join(wrong)} but this "
                f"environment's Vault is {self._configured or 'not configured'}; refusing to "
                "send the agent's token there.",
                hint="Encrypt the file with a transit key of the environment's own Vault "
                "(keys/ENV/vault-transit.txt and secrets.vault.address must agree).",
            )

    def _adapter_for(self, obj: Object) -> sops.Sops:
        if not sopsmeta.transit_addresses(obj) or self._vault is None:
            return self._sops
        if self._vault.settings.auth == "token":
            return self._sops  # VAULT_TOKEN is already in sops' environment
        with self._lock:
            if self._transit_sops is None:
                self._transit_sops = self._sops.with_env(VAULT_TOKEN=self._vault.token())
            return self._transit_sops

    def _decrypt_all(
        self,
        objects: Sequence[Object],
        pending: Mapping[int, str],
        entries: dict[int, cache.Entry],
        names: _Sources,
    ) -> None:
        """Decrypt the ``pending`` objects into ``entries`` (and the cache). Documents for a
        sopsd go to it in one batch per adapter; with a ``sops`` process per document,
        ``workers`` at once."""

        def entry_of(i: int, plain: values.Plaintext | PromoteError) -> cache.Entry | PromoteError:
            if isinstance(plain, PromoteError):
                return self._sourced(plain, objects[i], names)
            try:
                return cache.to_entry(json.loads(plain.reveal()))
            except ValueError:
                what = self._name(objects[i])
                return SopsError(f"{what}: sops returned something that is not JSON.")

        def job(i: int) -> cache.Entry:
            obj = objects[i]
            try:
                plain = self._adapter_for(obj).decrypt(_document(obj), what=self._name(obj))
            except PromoteError as exc:
                raise self._sourced(exc, obj, names) from None
            entry = entry_of(i, plain)
            if isinstance(entry, PromoteError):
                raise entry
            return entry

        results: dict[int, Any] = dict.fromkeys(pending)  # input order, for _raise_first
        batches: dict[int, tuple[sops.Sops, list[int]]] = {}
        one_by_one = []
        for i in pending:
            try:
                adapter = self._adapter_for(objects[i])
            except PromoteError as exc:
                results[i] = self._sourced(exc, objects[i], names)
                continue
            if adapter.decryptor is None:
                one_by_one.append(i)
            else:
                batches.setdefault(id(adapter), (adapter, []))[1].append(i)
        for adapter, indices in batches.values():
            documents = [(_document(objects[i]), self._name(objects[i])) for i in indices]
            try:
                answers = adapter.decrypt_many(documents)
            except PromoteError as exc:  # sopsd itself failed: the batch did
                results[indices[0]] = exc
                continue
            for i, answer in zip(indices, answers, strict=True):
                results[i] = entry_of(i, answer)
        results.update(_run_all(job, one_by_one, self._workers))
        _raise_first(results, len(results))
        for i, key in pending.items():
            entry = results[i]
            assert isinstance(entry, cache.Entry)
            self._cache.put(key, entry)
            entries[i] = entry

    def _assemble(
        self, objects: Sequence[Object], entries: Mapping[int, cache.Entry], names: _Sources
    ) -> list[Object]:
        refs = {str(r) for e in entries.values() for r in e.refs.values()}
        values = self._read_refs(refs, objects, entries, names) if refs else {}
        out: list[Object] = []
        for i, obj in enumerate(objects):
            entry = entries.get(i)
            if entry is None or (not validation.is_sops_object(obj) and not entry.refs):
                out.append(obj)
                continue
            data = dict(entry.data)
            for key, ref in entry.refs.items():
                data[key] = _b64(values[str(ref)])
            new = {k: v for k, v in obj.items() if k not in ("sops", *_SECTIONS)}
            new["metadata"] = json.loads(json.dumps(obj.get("metadata") or {}))
            if data:
                new["data"] = data
            out.append(new)
        return out

    def _read_refs(
        self,
        refs: set[str],
        objects: Sequence[Object],
        entries: Mapping[int, cache.Entry],
        names: _Sources,
    ) -> dict[str, values.SecretText]:
        owner: dict[str, tuple[Object, str]] = {}  # ref -> (object, key) that uses it
        for i, entry in entries.items():
            for key, ref in entry.refs.items():
                owner.setdefault(str(ref), (objects[i], key))

        def where(text: str) -> str:
            # Named only when an error is reported: finding a Secret's file reads every file.
            obj, key = owner[text]
            name = str((obj.get("metadata") or {}).get("name", ""))
            source = names.get(name) if name else None
            return f"{self._name(obj)}" + (f" (from {source})" if source else "") + f" key {key!r}"

        client = self._vault
        if client is None:
            first = sorted(refs)[0]
            raise ConfigError(
                f"{where(first)}: refers to {first} but {self.env_name} has no Vault; set "
                f"secrets.vault in environments/{self.env_name}.yaml (or VAULT_ADDR)."
            )
        parsed = {text: vault.parse_ref(text) for text in sorted(refs)}

        def job(text: str) -> values.SecretText:
            ref = parsed[text]
            assert ref is not None
            try:
                return client.read_kv(ref)
            except PromoteError as exc:
                raise type(exc)(f"{where(text)}: {exc.message}", hint=exc.hint) from None

        results = _run_all(job, sorted(refs), min(self._workers, 8))
        _raise_first(results, len(results))
        return {k: v for k, v in results.items() if isinstance(v, values.SecretText)}


def _document(obj: Object) -> bytes:
    return json.dumps(obj, default=str).encode()


def _run_all(fn: Callable[[Any], Any], items: list[Any], workers: int) -> dict[Any, Any]:
    """``fn`` over ``items`` (in parallel when several); results or PromoteErrors by item."""
    results: dict[Any, Any] = {}
    if len(items) <= 1 or workers <= 1:
        for item in items:
            try:
                results[item] = fn(item)
            except PromoteError as exc:
                results[item] = exc
        return results
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = {item: pool.submit(fn, item) for item in items}
        for item, future in futures.items():
            try:
                results[item] = future.result()
            except PromoteError as exc:
                results[item] = exc
    return results


def _raise_first(results: Mapping[Any, Any], total: int) -> None:
    """Raise the first failure (in input order), saying how many others failed too."""
    failures = [r for r in results.values() if isinstance(r, PromoteError)]
    if not failures:
        return
    first = failures[0]
    more = f" ({len(failures) - 1} more of {total} failed too)" if len(failures) > 1 else ""
    raise type(first)(first.message + more, hint=first.hint) from None


def resolver_for_agent(project: config.Project, env: config.Environment) -> Resolver:
    """The agent's resolver: key material from its process environment, files named from
    ``project`` (read only when an error is reported)."""
    return Resolver.for_environment(env, sources=lambda: files.sources(project, env))
