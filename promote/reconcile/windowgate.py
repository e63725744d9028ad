"""The agent's merge windows (DESIGN.md §6, issue 16 item 4): a new revision waits for one.

During a deny window, or outside every allow window, the agent applies no new revision: it
keeps the one deployed (self-heal goes on) and says so in the status (``OutOfWindow``, the
window, the next opening), with one Event per waiting revision and the
``promote_out_of_window`` gauge. Two kinds of revision pass anyway:

- a break-glass merge: every first-parent step since the deployed revision that changes the
  environment's inputs merged a PR head that enough approvers (``breakGlass.required`` of the
  deployed revision) approved signed as break-glass; for an environment that requires
  approvals the trust chain has verified those approvals first;
- a rollback: the environment's inputs equal those of a revision verified after deploy here
  (``status.verified_revisions``; without ``verification:``, one synced and healthy), or of
  the deployed one (a commit for another environment changes nothing here).

The windows are the deployed revision's, never the new one's: a commit cannot open a window
by deleting it. The clock is the agent's (``Agent.clock``), so tests inject one. Nothing is
applied here; the agent renders whichever revision :meth:`WindowGate.admit` returns.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from promote import config
from promote.cluster import client, health
from promote.errors import PromoteError
from promote.git import history
from promote.promotion import scope, verification, windows
from promote.reconcile import status as status_mod
from promote.reconcile.metrics import Metrics
from promote.reconcile.source import GitSource
from promote.reconcile.verify import RECORDS, Verifier

log = logging.getLogger(__name__)

REMEMBERED = 20  # revisions verified after deploy kept as rollback targets


@dataclass(frozen=True, slots=True)
class Admission:
    revision: str  # what the pass deploys: the candidate, or the deployed one while it waits
    waiting: dict[str, Any] | None = None  # the status' ``window`` entry while it waits
    why: str = ""  # why the candidate passes (open window, break-glass, rollback)


class WindowGate:
    """One environment's window enforcement; restores what it needs from the status once."""

    def __init__(
        self,
        source: GitSource,
        cluster: client.Cluster,
        metrics: Metrics,
        *,
        env: str,
        namespace: str,
        verifier: Verifier | None = None,
        work_dir: Path | None = None,
        rendered: Callable[[str], config.EnvironmentConfig | None] = lambda rev: None,
    ) -> None:
        self.env = env
        self._source = source
        self._cluster = cluster
        self._metrics = metrics
        self._namespace = namespace
        self._verifier = verifier  # the trust gate's, when there is one: snapshots are shared
        self._owned = verifier is None  # else made when needed and closed after each judgement
        self._work_dir = work_dir
        self._rendered = rendered  # the agent's last render: its settings cost nothing
        self._configs: dict[str, config.EnvironmentConfig | str] = {}
        self._restored = False
        self._announced: str | None = None  # the waiting revision last given an Event
        self._exempt: dict[tuple[str, str, tuple[str, ...]], str | None] = {}

    # --- deciding ---------------------------------------------------------------------------
    def admit_in(self, st: status_mod.EnvStatus, candidate: str, now: datetime) -> Admission:
        """:meth:`admit`, restoring the deployed revision from the status on first use."""
        self.restore(st)
        return self.admit(st, candidate, now=now)

    def admit(self, st: status_mod.EnvStatus, candidate: str, *, now: datetime) -> Admission:
        """Whether ``candidate`` may replace the deployed revision (``st.revision``) now."""
        deployed = st.revision
        if deployed is None or deployed == candidate:
            return Admission(candidate, why="nothing deployed yet" if deployed is None else "")
        cfg = self._config(deployed)
        if isinstance(cfg, str):  # the deployed revision loaded when it was deployed
            log.warning("%s: windows at %s do not load: %s", self.env, deployed[:12], cfg)
            return Admission(candidate, why="the deployed revision's windows do not load")
        found = windows.state(cfg.windows, now)
        if found.open:
            return Admission(candidate, why=found.reason)
        exempt = self._exemption(deployed, candidate, st.verified_revisions, cfg)
        if exempt:
            return Admission(candidate, why=exempt)
        waiting = {
            "state": "OutOfWindow",
            "revision": candidate,
            "window": found.reason,
            "nextOpening": (
                found.next_opening.strftime("%Y-%m-%dT%H:%M:%SZ") if found.next_opening else None
            ),
            "message": (
                f"{self.env} waits to apply {candidate[:12]}: {found.describe()}; "
                f"{deployed[:12]} stays (self-heal goes on)"
            ),
        }
        return Admission(deployed, waiting)

    def _exemption(
        self, deployed: str, candidate: str, verified: list[str], cfg: config.EnvironmentConfig
    ) -> str | None:
        """Why ``candidate`` passes a closed window (a rollback, a break-glass merge), or None.
        Kept per (deployed, candidate, verified, PR records): a waiting pass repeats every
        poll. A history that cannot be read (a shallow mirror) exempts nothing: it waits."""
        records = repr(sorted(self._source.repo.refs(RECORDS).items()))
        key = (deployed, candidate, (*verified, records))
        if key not in self._exempt:
            if len(self._exempt) > 64:
                self._exempt.clear()
            found: str | None = None
            try:
                if self._restores(candidate, [deployed]):
                    found = f"no change to {self.env}'s inputs"
                elif self._restores(candidate, verified):
                    found = "a rollback to a revision verified here"
                elif glass := self._break_glass(deployed, candidate, cfg.break_glass_required):
                    found = f"a break-glass merge: {glass}"
            except PromoteError as exc:
                log.warning("%s: cannot judge %s for the window: %s", self.env, candidate[:12], exc)
            finally:
                if self._owned and self._verifier is not None:
                    self._verifier.close()  # its exported trees leave the disk
                    self._verifier = None
            self._exempt[key] = found
        return self._exempt[key]

    def _config(self, rev: str) -> config.EnvironmentConfig | str:
        """The environment's settings at ``rev``: the agent's last render's when it is that
        revision (the usual case), else the tree exported and loaded once (a restart)."""
        known = self._rendered(rev)
        if known is not None:
            return known
        if rev not in self._configs:
            if len(self._configs) > 16:
                self._configs.clear()
            with tempfile.TemporaryDirectory(prefix="promote-window-", dir=self._work_dir) as tmp:
                found: config.EnvironmentConfig | str
                try:
                    tree = self._source.export(rev, Path(tmp) / "tree")
                    found = config.load_project(tree, only=self.env).env(self.env).config
                except PromoteError as exc:
                    found = str(exc)
            self._configs[rev] = found
        return self._configs[rev]

    def verifier(self) -> Verifier:
        if self._verifier is None:
            self._verifier = Verifier(self._source.repo, env=self.env, work_dir=self._work_dir)
        return self._verifier

    def _restores(self, candidate: str, verified: list[str]) -> bool:
        """Whether the environment's inputs at ``candidate`` equal those at a revision in
        ``verified`` (layouts of both sides merged, as the trust chain compares them)."""
        v = self.verifier()
        mine = v.snapshot(candidate)
        if isinstance(mine, str):
            return False
        blobs = history.tree_blobs(self._source.repo, candidate)
        for other in dict.fromkeys(verified):
            if not self._source.repo.try_resolve(other):
                continue
            theirs = v.snapshot(other)
            layout = mine.layout if isinstance(theirs, str) else mine.layout.merged(theirs.layout)
            if scope.inputs_equal(
                self.env, layout, blobs, history.tree_blobs(self._source.repo, other)
            ):
                return True
        return False

    def _break_glass(self, deployed: str, candidate: str, need: int) -> str | None:
        """The break-glass reason(s) when every step changing the inputs broke glass."""
        v = self.verifier()
        v.evidence.reload_records()
        before = v.snapshot(deployed)
        reasons: list[str] = []
        for step in history.first_parent_steps(self._source.repo, deployed, candidate):
            after = v.snapshot(step.sha)
            if isinstance(before, str) or isinstance(after, str):
                return None
            layout = before.layout.merged(after.layout)
            before = after
            if not verification.touched_inputs(self.env, step.changed, layout):
                continue
            head = step.parents[1] if len(step.parents) > 1 else step.sha
            reason = self._glass_reason(head, need)
            if reason is None:
                return None
            reasons.append(f"{head[:12]} ({reason})")
        return ", ".join(reasons) or None

    def _glass_reason(self, head: str, need: int) -> str | None:
        for rec in self.verifier().evidence.records_for(head):
            if rec.pr.merge is None:
                continue
            by_reason: dict[str, set[str]] = {}
            for a in rec.approvals:
                if a.break_glass and a.head_sha == head and a.approver in rec.pr.merge.approvals:
                    by_reason.setdefault(a.break_glass, set()).add(a.approver)
            for reason, who in by_reason.items():
                if len(who) >= max(need, 1):
                    return f"PR #{rec.pr.number}: {reason}"
        return None

    # --- reporting --------------------------------------------------------------------------
    def restore(self, st: status_mod.EnvStatus) -> None:
        """The deployed revision and the verified ones from the published status, once (a
        new process must not take the head for the deployed revision)."""
        if self._restored:
            return
        self._restored = True
        try:
            stored = status_mod.read(self._cluster, env=self.env, namespace=self._namespace)
        except (PromoteError, ValueError, TypeError) as exc:
            log.debug("%s: no earlier status: %s", self.env, exc)
            return
        if stored is not None:
            st.revision = st.revision or stored.revision
            st.verified_revisions = st.verified_revisions or list(stored.verified_revisions)

    def publish(self, st: status_mod.EnvStatus, admission: Admission | None) -> None:
        """The waiting state into the status, the gauge and (once per revision) an Event."""
        waiting = admission.waiting if admission else None
        st.window = waiting
        self._metrics.out_of_window.labels(self.env).set(1 if waiting else 0)
        if waiting is None:
            self._announced = None
            return
        if st.sync == status_mod.SyncState.SYNCED:
            st.sync = status_mod.SyncState.OUT_OF_WINDOW
        if self._announced != waiting["revision"]:
            self._announced = waiting["revision"]
            log.info("%s", waiting["message"])
            status_mod.emit_event(
                self._cluster,
                regarding=status_mod.status_object(self.env, self._namespace),
                reason="OutOfWindow",
                message=waiting["message"],
                namespace=self._namespace,
            )

    def record_verified(self, st: status_mod.EnvStatus, *, verifies: bool) -> None:
        """Remember the deployed revision as a rollback target once it is verified after
        deploy (or, for an environment without ``verification:``, synced and healthy)."""
        rev = st.revision
        if verifies:
            done = st.verification or {}
            ok = done.get("state") == "Verified" and done.get("revision") == rev
        else:
            ok = st.sync in (status_mod.SyncState.SYNCED, status_mod.SyncState.OUT_OF_WINDOW) and (
                health.Health.from_label(st.health) is health.Health.HEALTHY
            )
        if ok and rev and rev not in st.verified_revisions:
            st.verified_revisions = [*st.verified_revisions, rev][-REMEMBERED:]

    def close(self) -> None:
        if self._verifier is not None:
            self._verifier.close()
