"""``promote agent``: run an environment's passes forever, heal drift as watches report it.

The loop is the only place that decides *when*: a full pass every ``interval`` (the safety
net) and immediately on a new revision, found by polling every ``poll_s`` or at once when a
verified push notification wakes the loop (``notify``; ``POST /hooks/git``, see ``webhook``);
a heal as soon as the watch cache reports a change on a managed object; a render, in the
background, of another branch's head when a verified push notification names it (a PR's:
its merge then finds the render in the cache; nothing is deployed from it); capped exponential
backoff after a retryable failure (Git, API server, Vault). A permanent failure (an invalid
object, an immutable field: ``retryable`` False) is not retried: the loop waits for a new
revision, or the next full resync. With several replicas, only the Lease holder passes or
heals; the others wait warm.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer

from promote.cluster.lease import LeaderElector, LeaseSettings
from promote.errors import PromoteError
from promote.reconcile import metrics as metrics_mod
from promote.reconcile import webhook as webhook_mod
from promote.reconcile.agent import Agent, PassReport
from promote.reconcile.status import Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoopSettings:
    # Full resync; drift is caught earlier by watches. None: the environment's
    # ``sync.interval`` at the revision last deployed (default 60 s).
    interval_s: float | None = None
    poll_s: float = 5.0  # how often to look for a new revision between full passes
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0  # cap of the exponential backoff after failures
    leader_election: bool = True
    listen: str | None = None  # "127.0.0.1:9090" serves /status, /healthz, /metrics
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    # POST /hooks/git on ``listen``; enabled only when $PROMOTE_WEBHOOK_SECRET is set.
    webhook: webhook_mod.WebhookSettings = field(default_factory=webhook_mod.WebhookSettings)


def _transient(report: PassReport) -> bool:
    """Whether a failed pass is retried with backoff: a retryable fault (Git, API server,
    Vault unreachable), or any fetch failure (there is no revision yet to wait for)."""
    error = report.error
    return error is not None and (error.retryable or error.stage is Stage.FETCH)


def backoff_delays(minimum: float, maximum: float) -> list[float]:
    out, d = [], minimum
    while d < maximum:
        out.append(d)
        d *= 2
    return [*out, maximum]


class AgentLoop:
    def __init__(self, agent: Agent, settings: LoopSettings, *, identity: str | None = None):
        self.agent = agent
        self.settings = settings
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self.elector = LeaderElector(
            agent.cluster,
            name=f"promote-agent-{agent.settings.env}",
            namespace=agent.settings.namespace,
            identity=self.identity,
            settings=settings.lease,
        )
        self.stop_event = threading.Event()
        self._wake = threading.Event()  # set by notify() and stop(): look for a revision now
        self.notifications = 0  # notify() calls: verified pushes to the agent's branch
        self.webhook = webhook_mod.WebhookReceiver(
            branch=agent.source.branch,
            wake=self.notify,
            ahead=self.render_ahead,
            settings=settings.webhook,
        )
        self._ahead: str | None = None  # the latest branch pushed, waiting to be rendered
        self._ahead_wake = threading.Event()
        self.rendered_ahead = 0  # branch heads rendered into the cache
        self.last_report: PassReport | None = None
        self.passes = 0
        self.polls = 0  # looks for a new revision between passes
        self._server: ThreadingHTTPServer | None = None

    @property
    def interval_s(self) -> float:
        """Seconds between full passes: the flag, else the deployed revision's sync.interval."""
        if self.settings.interval_s is not None:
            return self.settings.interval_s
        return self.agent.sync_settings.interval.total_seconds()

    def _status(self) -> dict[str, object]:
        doc = self.agent.status.to_dict()
        doc["leader"] = self.elector.is_leader or not self.settings.leader_election
        doc["identity"] = self.identity
        return doc

    def _serve(self) -> None:
        if self.settings.listen:
            self._server = metrics_mod.serve(
                self.settings.listen,
                status=self._status,
                healthy=lambda: not self.stop_event.is_set(),
                metrics=self.agent.metrics,
                webhook=self.webhook,
            )

    def run(self) -> None:
        self._serve()
        heal = threading.Thread(target=self._heal_loop, name="self-heal", daemon=True)
        heal.start()
        ahead = threading.Thread(target=self._ahead_loop, name="render-ahead", daemon=True)
        ahead.start()
        delays = backoff_delays(self.settings.backoff_min_s, self.settings.backoff_max_s)
        failures = 0
        next_full = next_poll = 0.0  # a look for a new revision every poll_s, or when notified
        last_revision: str | None = None
        try:
            while not self.stop_event.is_set():
                if not self._is_leader():
                    self.agent.healing_enabled = False
                    self.stop_event.wait(self.settings.lease.renew_s)
                    continue
                now = time.monotonic()
                woken = self._wake.is_set()
                self._wake.clear()  # a notification from here on wakes the wait below
                due = now >= next_full or failures > 0
                revision = None
                if not due and (woken or now >= next_poll):
                    next_poll = now + self.settings.poll_s
                    revision = self._peek_revision()
                    due = revision is not None and revision != last_revision
                if due:
                    report = self.agent.run_pass(head=revision)
                    self.last_report = report
                    self.passes += 1
                    if report.error and _transient(report):
                        failures += 1
                        delay = delays[min(failures - 1, len(delays) - 1)]
                        log.warning(
                            "%s: %s failed; retrying in %.0fs",
                            self.agent.settings.env,
                            report.error.stage,
                            delay,
                        )
                        self.stop_event.wait(delay)
                        continue
                    failures = 0
                    last_revision = self._settled(report)
                    next_full = time.monotonic() + self.interval_s
                    self.agent.healing_enabled = True
                # Verification after deploy between passes: a soak ending, a Job finishing;
                # then the rollback a failed verdict started (outside the pass, once each).
                self.agent.recheck()
                self.agent.roll_back_failed()
                # With leader election the Lease is renewed every renew_s; the revision is
                # still looked at only every poll_s (next_poll), or at once when notified.
                wait = self.settings.poll_s
                if self.settings.leader_election:
                    wait = min(wait, self.settings.lease.renew_s)
                self._wake.wait(wait)
        finally:
            self.agent.healing_enabled = False
            self.agent.cache.stop()
            self.agent.desired_state.close()  # the sops decryptor processes
            self.elector.release()
            if self._server is not None:
                self._server.shutdown()

    def _settled(self, report: PassReport) -> str | None:
        """After a pass that did not fail transiently: the revision not to pass again until
        main moves, or None to look again at each poll (a trust record may come, or the
        merge window may open)."""
        if report.error:
            _log_permanent(self.agent.settings.env, report)
        if report.verdict is not None and not report.verdict.verified:
            return None
        if report.admission is not None and report.admission.waiting:
            return None
        return report.head or report.revision

    def _peek_revision(self) -> str | None:
        self.polls += 1
        try:
            return self.agent.source.fetch()
        except PromoteError as exc:  # the next pass reports it with its stage
            log.debug("poll failed: %s", exc)
            return None

    def _is_leader(self) -> bool:
        if not self.settings.leader_election:
            return True
        return self.elector.try_acquire_or_renew()

    def _heal_loop(self) -> None:
        while not self.stop_event.is_set():
            if not self.agent.healing_enabled:  # first pass or standby: events wait queued
                self.stop_event.wait(0.2)
            elif self.agent.wait_for_heal_work(0.5):
                self.agent.heal_pending()

    def render_ahead(self, ref: str) -> None:
        """A branch other than the agent's was pushed (a PR's head): render it into the cache
        in the background. Pushes coalesce: only the latest waiting branch is rendered, one
        at a time, so a flood of pushes costs at most one render in flight."""
        self._ahead = ref
        self._ahead_wake.set()

    def _ahead_loop(self) -> None:
        while not self.stop_event.is_set():
            self._ahead_wake.wait(1.0)
            self._ahead_wake.clear()
            ref, self._ahead = self._ahead, None
            if ref is None or self.stop_event.is_set():
                continue
            if self.settings.leader_election and not self.elector.is_leader:
                continue  # a standby deploys nothing: its renders would go unused
            try:
                if self.agent.desired_state.prerender(ref):
                    self.rendered_ahead += 1
            except PromoteError as exc:  # the pass that may deploy it reports any error
                log.info("%s: rendering %s ahead failed: %s", self.agent.settings.env, ref, exc)

    def notify(self) -> None:
        """A push happened: look for a new revision now rather than at the next poll. The
        revision is still fetched and verified by the pass; several notifications during one
        pass coalesce into one look after it."""
        self.notifications += 1
        self._wake.set()

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()


def _log_permanent(env: str, report: PassReport) -> None:
    """An error in the input (an invalid object, an immutable field): the same revision would
    fail the same way, so no backoff; the status and one Event say what to fix, and the next
    revision is applied at once."""
    assert report.error is not None
    log.warning(
        "%s: %s failed at %s; waiting for a new revision",
        env,
        report.error.stage,
        (report.revision or "?")[:12],
    )
