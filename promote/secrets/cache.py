"""The decrypt path's plaintext cache: resolved Secrets kept in memory, keyed by their ciphertext.

A running agent renders the same encrypted Secrets on every pass; keyed by a hash of the
environment, the encrypted sections and the ``sops`` block, an unchanged Secret is decrypted
once. This module owns the cached form of a resolved Secret (:class:`Entry`: base64 values by
key, ``vault:`` references still references), how plaintext sections become one, the key, and
a bounded least-recently-used store with hit and miss counts. Thread safe.

It must not decrypt, read Vault or write anything anywhere: entries hold plaintext and live in
memory only (``resolve.py`` fills the cache). Part of the decrypt path, so it never imports the
authoring side.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promote.cluster import drift
from promote.secrets import sopsmeta, values, vault


@dataclass(frozen=True, slots=True)
class Entry:
    """The cached plaintext of one Secret: base64 values by key (vault refs still refs)."""

    data: Mapping[str, values.SecretText]
    refs: Mapping[str, vault.KvRef]


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    size: int


def ciphertext_hash(env_name: str, obj: dict[str, Any]) -> str:
    """What the cache is keyed by: the environment, the encrypted sections and the sops block."""
    material = [env_name, *(obj.get(s) for s in sopsmeta.SECTIONS), obj.get("sops")]
    blob = json.dumps(material, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def to_entry(sections: Mapping[str, Any]) -> Entry:
    """Plaintext sections -> base64 data (stringData folded in as on the API server) + refs."""
    folded = drift.fold_string_data(sections.get("data"), sections.get("stringData"))
    data = {key: values.SecretText(value) for key, value in folded.items()}
    refs: dict[str, vault.KvRef] = {}
    for key, value in data.items():
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        ref = vault.parse_ref(decoded) if decoded.startswith("vault:") else None
        if ref:
            refs[key] = ref
    return Entry(data, refs)


class PlaintextCache:
    """At most ``size`` entries; the least recently used one goes first."""

    def __init__(self, size: int) -> None:
        self._entries: collections.OrderedDict[str, Entry] = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries))

    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` (counted as a hit), or None (counted as a miss)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self._hits += 1
            else:
                self._misses += 1
            return entry

    def put(self, key: str, entry: Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
