"""Agents' status for the dashboard: where it is read from, and the agents page.

Each environment's status is read either from its agent's ``/status`` URL (``--agent-url
ENV=URL``), or from the ConfigMap ``promote-status-ENV`` the agent writes in its namespace,
with the cluster access of the environment file in the local checkout (or ``--kubeconfig``
and ``--context``): read-only credentials that may ``get`` that ConfigMap are enough.
Both give the same document (:class:`promote.reconcile.status.EnvStatus`); what failed to
read is shown as such, with the adapter's message (which never holds a value).

Statuses are re-read at most every ``max_age_s``; cluster connections are made once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from promote import config
from promote.cluster import client
from promote.errors import PromoteError
from promote.reconcile import factory
from promote.reconcile import status as status_mod

if TYPE_CHECKING:
    from promote.ui.app import UI

Statuses = dict[str, dict[str, Any]]  # env -> {"status": dict | None, "error", "source"}
URL_TIMEOUT_S = 3.0


class StatusBoard:
    def __init__(
        self,
        project: config.Project,
        *,
        urls: Mapping[str, str],
        kubeconfig: str | None,
        context: str | None,
        max_age_s: float,
    ) -> None:
        unknown = sorted(set(urls) - set(project.environments) - set(project.broken))
        if unknown:
            raise PromoteError(
                f"--agent-url names {', '.join(unknown)}, not an environment of "
                f"{project.root} (environments: {', '.join(project.pipeline())})."
            )
        self._project = project
        self._urls = dict(urls)
        self._ov = factory.Overrides(kubeconfig=kubeconfig, context=context)
        self._max_age_s = max_age_s
        self._clusters: dict[str, client.Cluster] = {}
        self._http = httpx.Client(timeout=URL_TIMEOUT_S, follow_redirects=False)
        self._lock = threading.Lock()
        self._read_at = -1e9
        self._last: Statuses = {}

    def source(self, env: str) -> str:
        if env in self._urls:
            return f"{self._urls[env].rstrip('/')}/status"
        ns = self._project.env(env).config.cluster.namespace
        return f"ConfigMap {ns}/{status_mod.configmap_name(env)}"

    def read(self) -> Statuses:
        """Every environment's status (pipeline order), at most ``max_age_s`` old."""
        with self._lock:
            if time.monotonic() - self._read_at >= self._max_age_s:
                self._last = {env: self._read_one(env) for env in self._project.pipeline()}
                self._read_at = time.monotonic()
            return self._last

    def _read_one(self, env: str) -> dict[str, Any]:
        out: dict[str, Any] = {"status": None, "error": None, "source": self.source(env)}
        try:
            found = self._from_url(env) if env in self._urls else self._from_configmap(env)
        except PromoteError as exc:
            out["error"] = str(exc)
            return out
        if found is None:
            out["error"] = f"no status yet ({out['source']} is missing: has the agent run?)"
        else:
            out["status"] = found.to_dict()
        return out

    def _from_configmap(self, env: str) -> status_mod.EnvStatus | None:
        e = self._project.env(env)
        if env not in self._clusters:
            self._clusters[env] = factory.connect_env(e, self._ov)
        return status_mod.read(self._clusters[env], env=env, namespace=e.config.cluster.namespace)

    def _from_url(self, env: str) -> status_mod.EnvStatus | None:
        url = self.source(env)
        try:
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise PromoteError(f"{url}: cannot reach the agent ({type(exc).__name__}).") from exc
        if response.status_code != 200:
            raise PromoteError(f"{url}: the agent answered HTTP {response.status_code}.")
        try:
            doc = response.json()
        except ValueError as exc:
            raise PromoteError(f"{url}: the agent's answer is not JSON.") from exc
        if not isinstance(doc, dict):
            raise PromoteError(f"{url}: the agent's answer is not a status document.")
        return status_mod.EnvStatus.from_dict(doc)

    def close(self) -> None:
        self._http.close()


def routes(ui: UI) -> list[Route]:
    def view() -> dict[str, Any]:
        statuses = ui.board.read()
        return {"statuses": statuses, "pipeline": list(statuses)}

    def page(request: Request) -> Response:
        return ui.page(request, "agents.html", title="Agents", poll_s=ui.settings.poll_s, **view())

    def table(request: Request) -> Response:
        return ui.page(request, "_agents_table.html", poll_s=ui.settings.poll_s, **view())

    def api(request: Request) -> Response:
        return JSONResponse({"environments": ui.board.read()})

    return [
        Route("/agents", page, methods=["GET"]),
        Route("/agents/table", table, methods=["GET"]),
        Route("/api/agents", api, methods=["GET"]),
    ]
