"""The Kubernetes API adapter: connection, discovery, get/list/watch, server-side apply, delete.

Owns the one outside system "Kubernetes API server". It speaks to it through the official
``kubernetes`` client's ``ApiClient`` (auth, TLS, kubeconfig contexts), but issues the REST
calls itself: discovery is one cached map from (apiVersion, kind) to a resource, and apply is a
PATCH with ``application/apply-patch+yaml`` (server-side apply), exactly what ``kubectl apply
--server-side`` sends. Callers get plain dicts and our dataclasses, never library models.

Every library exception is translated here, through :mod:`promote.cluster.statuses` (the
error classes and the mapping live there).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from promote.cluster import statuses
from promote.errors import ClusterError, ClusterUnavailable

log = logging.getLogger(__name__)

FIELD_MANAGER = "promote"


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One API resource: where its objects live (from discovery)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection_path(namespace if self.namespaced else None)}/{name}"


class NotServed(ClusterError):
    """Discovery does not list the kind: its CRD is missing, or not established yet."""

    code = "not-served"


def _default_kubeconfig() -> tuple[str, bool]:
    """Where the Kubernetes client looks without a kubeconfig given, in words, and whether a
    file is there: ``$KUBECONFIG`` (a list, as kubectl reads it), else ~/.kube/config."""
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        found = any(Path(p).expanduser().is_file() for p in listed)
        return f"KUBECONFIG={os.environ['KUBECONFIG']}", found
    return "~/.kube/config", Path("~/.kube/config").expanduser().is_file()


def connect(
    *, kubeconfig: str | None = None, context: str | None = None, in_cluster: bool = False
) -> k8s_client.ApiClient:
    """An ApiClient for a kubeconfig file/context, or the pod's service account."""
    # the library would say "Invalid kube-config file. No configuration found."
    if not in_cluster and kubeconfig and not Path(kubeconfig).expanduser().is_file():
        raise ClusterError(
            f"kubeconfig {kubeconfig} does not exist (or is not a file).",
            hint="Set cluster.kubeconfig in the environment file, or --kubeconfig, to an existing "
            "kubeconfig file.",
        )
    default = _default_kubeconfig()
    if not in_cluster and not kubeconfig and not default[1]:
        raise ClusterError(
            f"no kubeconfig: {default[0]} does not exist.",
            hint="Set cluster.kubeconfig in the environment file, --kubeconfig or KUBECONFIG "
            "to an existing kubeconfig file (`promote cluster up` writes one for a local "
            "cluster).",
        )
    try:
        if in_cluster:
            cfg = k8s_client.Configuration()
            k8s_config.load_incluster_config(client_configuration=cfg)
        else:
            cfg = k8s_client.Configuration()
            k8s_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg
            )
    except (ConfigException, OSError) as exc:
        where = "in-cluster service account" if in_cluster else (kubeconfig or default[0])
        raise ClusterError(
            f"cannot load Kubernetes credentials from {where}"
            + (f" (context {context!r})" if context else "")
            + f": {exc}",
            hint="Set cluster.kubeconfig/cluster.context in the environment file, or --kubeconfig.",
        ) from exc
    cfg.retries = False
    # Many threads (watches + parallel applies) share one pool.
    cfg.connection_pool_maxsize = 32
    return k8s_client.ApiClient(cfg)


class Cluster:
    """Domain verbs over one API server. Thread-safe: discovery is guarded by a lock."""

    def __init__(self, api_client: k8s_client.ApiClient, *, timeout_s: float = 30) -> None:
        self.api = api_client
        self._timeout_s = timeout_s
        self._resources: dict[tuple[str, str], ResourceType] | None = None
        self._lock = threading.Lock()

    # --- raw requests ---------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout_s: float | None = None,
        stream: bool = False,
        what: str | None = None,
    ) -> Any:
        """One API call; ``what`` names it in errors (default: method and path)."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        what = what or f"{method} {path}"
        try:
            method, url, headers, _, _ = self.api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params=headers,
                auth_settings=["BearerToken"],
            )
            payload = json.dumps(body).encode() if body is not None else None
            timeout = None if stream else urllib3.Timeout(total=timeout_s or self._timeout_s)
            resp = self.api.rest_client.pool_manager.request(
                method,
                url,
                body=payload,
                headers=headers,
                timeout=timeout,
                preload_content=False,
                retries=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise statuses.translate(exc, what) from exc
        if not 200 <= resp.status <= 299:
            data = resp.data
            resp.release_conn()
            raise statuses.translate_status(resp.status, data, what)
        if stream:
            return resp
        data = resp.data
        resp.release_conn()
        return json.loads(data) if data else None

    # --- discovery -------------------------------------------------------------------------
    def _discover(self) -> dict[tuple[str, str], ResourceType]:
        found: dict[tuple[str, str], ResourceType] = {}
        groups: list[tuple[str, str]] = [("", "v1")]
        apis = self.request("GET", "/apis") or {}
        for g in apis.get("groups", []):
            for v in g.get("versions", []):
                groups.append((g["name"], v["version"]))
        for group, version in groups:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            try:
                doc = self.request("GET", path) or {}
            except statuses.NotFoundInCluster:
                continue
            for r in doc.get("resources", []):
                if "/" in r["name"]:
                    continue  # subresources (status, scale)
                rt = ResourceType(group, version, r["kind"], r["name"], r["namespaced"])
                found.setdefault((rt.api_version, rt.kind), rt)
        return found

    def resource(self, api_version: str, kind: str) -> ResourceType:
        with self._lock:
            if self._resources is None or (api_version, kind) not in self._resources:
                # Unknown kinds re-run discovery once: a CRD may just have been applied.
                self._resources = self._discover()
            rt = self._resources.get((api_version, kind))
        if rt is None:
            raise NotServed(
                f"the API server does not serve {kind} in {api_version}; install its "
                "CustomResourceDefinition first or fix apiVersion/kind."
            )
        return rt

    def namespaced(self, api_version: str, kind: str) -> bool | None:
        """Whether discovery serves the kind as namespaced; None when it does not serve it."""
        try:
            return self.resource(api_version, kind).namespaced
        except NotServed:
            return None

    def scoped_key(self, key: str) -> str:
        """``key`` with the namespace dropped when discovery says its kind is cluster-scoped
        (keys written before scope came from discovery may carry one)."""
        group, kind, ns, name = key.split("/", 3)
        if ns:
            rt = self.resource_by_group_kind(group, kind)
            if rt is not None and not rt.namespaced:
                return f"{group}/{kind}//{name}"
        return key

    def resource_by_group_kind(self, group: str, kind: str) -> ResourceType | None:
        """The preferred (first discovered) version of a group's kind, or None."""
        with self._lock:
            if self._resources is None:
                self._resources = self._discover()
            for rt in self._resources.values():
                if rt.group == group and rt.kind == kind:
                    return rt
        return None

    def forget_discovery(self) -> None:
        with self._lock:
            self._resources = None

    def resource_of(self, obj: dict[str, Any]) -> ResourceType:
        return self.resource(str(obj.get("apiVersion")), str(obj.get("kind")))

    # --- object verbs ----------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", rt.object_path(namespace, name))
        except statuses.NotFoundInCluster:
            return None

    def list(
        self, rt: ResourceType, *, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        query: list[tuple[str, Any]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        doc = self.request("GET", rt.collection_path(namespace), query=query, timeout_s=120)
        items = doc.get("items", [])
        for item in items:  # list items omit apiVersion/kind
            item.setdefault("apiVersion", rt.api_version)
            item.setdefault("kind", rt.kind)
        return items, str(doc.get("metadata", {}).get("resourceVersion", ""))

    def watch(
        self,
        rt: ResourceType,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_s: int = 300,
        namespace: str | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (type, object) watch events; ends when the server closes the stream.

        A 410 Gone arrives as an ERROR event with code 410; the caller re-lists.
        """
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_s),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        resp = self.request("GET", rt.collection_path(namespace), query=query, stream=True)
        buf = b""
        started = time.monotonic()
        try:
            for chunk in resp.stream(4096, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield event.get("type", ""), event.get("object") or {}
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if time.monotonic() - started >= timeout_s - 5:
                return  # the server ended the watch at timeoutSeconds: a normal end
            raise ClusterUnavailable(
                f"watch {rt.kind}: stream broke ({type(exc).__name__})."
            ) from exc
        finally:
            resp.release_conn()

    def apply(
        self,
        obj: dict[str, Any],
        *,
        force: bool = False,
        dry_run: bool = False,
        field_manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        """Server-side apply one object; returns the object as the server stored it."""
        rt = self.resource_of(obj)
        meta = obj.get("metadata") or {}
        query: list[tuple[str, Any]] = [("fieldManager", field_manager)]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        try:
            return self.request(
                "PATCH",
                rt.object_path(meta.get("namespace"), meta["name"]),
                query=query,
                body=obj,
                content_type="application/apply-patch+yaml",
                what=f"apply {rt.kind} {_name(meta)}",
            )
        except ClusterError as exc:
            raise statuses.scrubbed(exc, obj) from exc

    def delete(self, rt: ResourceType, namespace: str | None, name: str) -> bool:
        """Delete (background propagation); False when it was already gone."""
        try:
            self.request(
                "DELETE",
                rt.object_path(namespace, name),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": "Background",
                },
            )
        except statuses.NotFoundInCluster:
            return False
        return True

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        rt = self.resource_of(obj)
        ns = (obj.get("metadata") or {}).get("namespace")
        return self.request("POST", rt.collection_path(ns), body=obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        rt = self.resource_of(obj)
        meta = obj["metadata"]
        return self.request("PUT", rt.object_path(meta.get("namespace"), meta["name"]), body=obj)

    def server_version(self) -> str:
        doc = self.request("GET", "/version") or {}
        return str(doc.get("gitVersion", "?"))


def _name(meta: dict[str, Any]) -> str:
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def object_key(obj: dict[str, Any]) -> str:
    """A stable identity: ``group/Kind/namespace/name`` (group empty for core).

    The namespace is the object's own: desired objects get theirs from discovery first
    (``apply.scope``), live ones from the server, so a cluster-scoped object's key never
    carries the namespace kustomize stamped on it."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    meta = obj.get("metadata") or {}
    return f"{group}/{obj.get('kind')}/{meta.get('namespace') or ''}/{meta.get('name')}"


def describe_key(key: str) -> str:
    _group, kind, ns, name = key.split("/", 3)
    return f"{kind} {ns + '/' if ns else ''}{name}"
