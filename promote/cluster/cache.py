"""A watch-backed cache of the live objects an environment manages.

One thread per kind lists the objects carrying the environment's labels, then watches them;
on a 410 Gone (the resource version is too old) or a broken stream it re-lists, backing off on
errors. Every change is handed to a callback, which is how the reconcile loop self-heals drift
within a second instead of waiting for its interval. The cache holds Secrets as the API returns
them, in memory only; nothing here logs an object's content.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from promote.cluster import client
from promote.errors import ClusterError

log = logging.getLogger(__name__)

# (event type, object key, live object or None when deleted)
EventHandler = Callable[[str, str, dict[str, Any] | None], None]


class LiveCache:
    def __init__(
        self,
        cluster: client.Cluster,
        *,
        label_selector: str,
        on_event: EventHandler | None = None,
        watch_timeout_s: int = 240,
    ) -> None:
        self._cluster = cluster
        self._selector = label_selector
        self._on_event = on_event
        self._watch_timeout_s = watch_timeout_s
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._threads: dict[tuple[str, str], threading.Thread] = {}
        self._synced: dict[tuple[str, str], threading.Event] = {}
        self._stop = threading.Event()

    # --- reading --------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(key)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._objects)

    def watched(self) -> list[tuple[str, str]]:
        return list(self._threads)

    # --- watching -------------------------------------------------------------------------
    def ensure(
        self, rt: client.ResourceType, *, namespace: str | None = None, wait_s: float = 30
    ) -> None:
        """Start watching a kind (once) and wait until its first list is in the cache.

        ``namespace`` limits a namespaced kind to one namespace, so an agent whose RBAC is a
        Role in its environment's namespace can watch (deploy/base/rbac.yaml)."""
        ident = (rt.api_version, rt.kind)
        if ident not in self._threads:
            self._synced[ident] = threading.Event()
            ns = namespace if rt.namespaced else None
            thread = threading.Thread(
                target=self._run, args=(rt, ns), name=f"watch-{rt.kind}", daemon=True
            )
            self._threads[ident] = thread
            thread.start()
        if not self._synced[ident].wait(wait_s):
            raise ClusterError(f"could not list {rt.kind} objects within {wait_s:.0f}s.")

    def stop(self) -> None:
        self._stop.set()

    def _replace_kind(self, rt: client.ResourceType, items: list[dict[str, Any]]) -> None:
        prefix = f"{rt.group}/{rt.kind}/"
        fresh = {client.object_key(o): o for o in items}
        with self._lock:
            stale = [k for k in self._objects if k.startswith(prefix) and k not in fresh]
            for k in stale:
                del self._objects[k]
            self._objects.update(fresh)
        if self._on_event:
            for k in stale:  # deleted while we were not watching
                self._on_event("DELETED", k, None)

    def _run(self, rt: client.ResourceType, namespace: str | None) -> None:
        backoff = 0.2
        ident = (rt.api_version, rt.kind)
        while not self._stop.is_set():
            try:
                items, version = self._cluster.list(
                    rt, namespace=namespace, label_selector=self._selector
                )
                self._replace_kind(rt, items)
                self._synced[ident].set()
                backoff = 0.2
                version = self._watch(rt, version, namespace)
            except ClusterError as exc:
                if self._stop.is_set():
                    return  # stopped: a stream broken by a shutdown is not a failure
                log.warning("watch %s failed, retrying in %.1fs: %s", rt.kind, backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _watch(self, rt: client.ResourceType, version: str, namespace: str | None) -> str:
        """Watch until the stream ends; returns so that the caller re-lists (cheap, and it
        also covers 410 Gone)."""
        while not self._stop.is_set():
            started = time.monotonic()
            for etype, obj in self._cluster.watch(
                rt,
                resource_version=version,
                label_selector=self._selector,
                timeout_s=self._watch_timeout_s,
                namespace=namespace,
            ):
                if self._stop.is_set():
                    return version
                if etype == "ERROR":
                    code = obj.get("code")
                    log.debug("watch %s: ERROR %s, re-listing", rt.kind, code)
                    return version  # 410 Gone and friends: re-list
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion", version))
                if etype == "BOOKMARK":
                    continue
                obj.setdefault("apiVersion", rt.api_version)
                obj.setdefault("kind", rt.kind)
                key = client.object_key(obj)
                with self._lock:
                    if etype == "DELETED":
                        self._objects.pop(key, None)
                    else:
                        self._objects[key] = obj
                if self._on_event:
                    self._on_event(etype, key, None if etype == "DELETED" else obj)
            if time.monotonic() - started < 1:
                # The stream closed at once: let the outer loop re-list after a pause.
                return version
        return version
