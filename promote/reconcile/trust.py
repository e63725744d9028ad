"""Where an agent's trust starts and where it stands: the pin, the last verified revision V,
and which revision a pass may deploy (DESIGN.md §4 "The agent verifies").

Trust starts at a pinned revision (``--trust-from SHA``; ``promote init`` prints it,
``promote demo`` passes it), or at the commit the environment's approvers signed tags of
(``reconcile/pins.py``), read while no pin is given or stored. V and the pin are kept in
the agent's status ConfigMap, in the cluster, where a Git pusher cannot change them; Git
holds nothing the agent trusts by itself.
Each pass asks :meth:`TrustGate.decide`: the head when it is verified from V, else V again
(self-heal keeps V in the cluster) with the verdict naming the first offending commit. If V
is lost or is not an ancestor of the head, verification starts over from the pin; the head is
never adopted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from promote import config
from promote.cluster import client
from promote.errors import PolicyBlocked
from promote.git import repo as git_repo
from promote.promotion import verification
from promote.reconcile import status as status_mod
from promote.reconcile.metrics import Metrics
from promote.reconcile.verify import ProofSource, Verifier

log = logging.getLogger(__name__)

HISTORY = 20  # verified revisions remembered (a rollback to one of them needs no approval)


@dataclass(frozen=True, slots=True)
class TrustSettings:
    pin: str | None = None  # --trust-from: the revision trust starts at (else the stored one)
    # Without either: the signed pin tags, (commit, "") or ("", why not) (``pins.read_pin``).
    tags: Callable[[], tuple[str, str]] | None = None


_CLUSTER_FIELDS = (
    ("context", "context"),
    ("kubeconfig", "kubeconfig"),
    ("inCluster", "in_cluster"),
)


@dataclass(frozen=True, slots=True)
class Connection:
    """The cluster settings an agent connected with, and where it read them: a verified
    revision, or (without a pin to verify from) the checkout it runs in. Credentials follow
    verified settings (issue 13 item 9): a pass stops before comparing or applying anything
    when the revision it deploys, verified, says otherwise."""

    namespace: str
    cluster: config.ClusterConfig | None  # None: a client handed in (tests): namespace only
    origin: str  # "the checkout", "verified revision 1a2b3c4d5e6f"
    fixed: frozenset[str] = frozenset()  # set by the operator's flags: theirs, not compared

    def check(self, env: str, at: config.ClusterConfig, *, revision: str) -> None:
        ours = self.cluster
        pairs = [("namespace", self.namespace, at.namespace)]
        if ours is not None:
            for name, attr in _CLUSTER_FIELDS:
                if name not in self.fixed:
                    pairs.append((name, getattr(ours, attr), getattr(at, attr)))
        differ = [f"cluster.{n} {new!r} (not {old!r})" for n, old, new in pairs if old != new]
        if differ:
            raise PolicyBlocked(
                f"environments/{env}.yaml at {revision[:12]}, the revision {env} deploys "
                f"(verified), sets {', '.join(differ)}, but this connection was made with the "
                f"settings of {self.origin}; credentials follow verified settings only, so "
                "nothing was compared or applied.",
                hint="Run it again (a verified change is read from Git), or from a checkout of "
                "the verified revision; an unapproved change to these settings needs approval.",
            )


@dataclass(frozen=True, slots=True)
class Decision:
    deploy: str  # the revision this pass renders: the head if verified, else V
    verdict: verification.Verdict

    @property
    def verified(self) -> bool:
        return self.verdict.verified


class TrustGate:
    """One environment's trust state; the agent restores it from its status once."""

    def __init__(
        self,
        repo: git_repo.Repo,
        settings: TrustSettings,
        *,
        env: str,
        proof_source: ProofSource | None = None,
    ) -> None:
        self.env = env
        self.settings = settings
        self.verifier = Verifier(repo, env=env, proof_source=proof_source)
        self._repo = repo
        self.pin: str | None = None
        self.verified: str | None = None  # V
        self.history: list[str] = []  # verified revisions, oldest first, V last
        self._restored = False

    def restore(self, stored: status_mod.EnvStatus | None) -> None:
        """Take V and the pin from the status ConfigMap; ``--trust-from`` wins over a stored
        pin, and a stored V is kept only if it descends from the pin in force."""
        self._restored = True
        flag = self._resolve(self.settings.pin)
        kept = stored.trust if stored and stored.trust else {}
        self.pin = flag or self._resolve(kept.get("pin"))
        v = self._resolve(kept.get("verified"))
        history = [h for h in kept.get("history", []) if isinstance(h, str)]
        if self.pin and v and self._repo.is_ancestor(self.pin, v):
            self.verified = v
            self.history = [*(h for h in history if h != v), v][-HISTORY:]
        elif self.pin:
            self.verified, self.history = self.pin, [self.pin]

    @property
    def restored(self) -> bool:
        return self._restored

    def _resolve(self, rev: object) -> str | None:
        if not isinstance(rev, str) or not rev:
            return None
        return self._repo.try_resolve(rev)

    def decide(self, head: str) -> Decision:
        """What to deploy for ``head``; raises PolicyBlocked when there is nothing trusted."""
        tagged = ""
        if self.pin is None and not self.settings.pin and self.settings.tags is not None:
            found, tagged = self.settings.tags()
            if found:
                log.info("%s: trust starts at %s (signed pin tags)", self.env, found[:12])
                self.pin, self.verified, self.history = found, found, [found]
        if self.pin is None or self.verified is None:
            where = (
                f" ({self.settings.pin} is not in the fetched history)" if self.settings.pin else ""
            )
            if tagged:
                where = f" (its pin tags do not count: {tagged})"
            raise PolicyBlocked(
                f"{self.env} requires approvals but its agent has no trusted revision to start "
                f"from{where}; start it with --trust-from SHA (a commit release managers trust, "
                "e.g. the first one `promote init` made), or have enough approvers sign "
                f"`promote pin {self.env} SHA --as NAME`."
            )
        descends = self._repo.is_ancestor(self.verified, head)
        if not descends and self.verified != self.pin:
            log.warning(
                "%s: V %s is not an ancestor of %s; verifying from the pin %s",
                self.env,
                self.verified[:12],
                head[:12],
                self.pin[:12],
            )
            self.verified, self.history = self.pin, [self.pin]
            descends = self._repo.is_ancestor(self.pin, head)
        if not descends:  # a history that does not contain the pin: nothing to walk
            why = f"the pin {self.pin[:12]} is not an ancestor of {head[:12]} on main"
            offence = verification.Offence(head, (), why)
            return Decision(
                self.verified,
                verification.Verdict(self.env, head, self.pin, False, offence),
            )
        verdict = self.verifier.check(anchor=self.verified, verified=self.history, revision=head)
        if verdict.verified:
            if head != self.verified:
                self.history = [*self.history, head][-HISTORY:]
            self.verified = head
            return Decision(head, verdict)
        return Decision(self.verified, verdict)

    def decide_in(self, cluster: client.Cluster, head: str, namespace: str) -> Decision:
        """:meth:`decide`, restoring V and the pin from the status ConfigMap on first use."""
        if not self._restored:
            self.restore(status_mod.read(cluster, env=self.env, namespace=namespace))
        return self.decide(head)

    def publish(
        self,
        st: status_mod.EnvStatus,
        verdict: verification.Verdict,
        *,
        head: str,
        deployed: str,
        cluster: client.Cluster,
        metrics: Metrics,
        namespace: str,
    ) -> None:
        """The verdict into the status, a metric and, once per refused head, a Warning Event."""
        st.trust = self.stored()
        if verdict.verified:
            st.unverified = None
            metrics.unverified.labels(self.env).set(0)
            return
        metrics.unverified.labels(self.env).set(1)
        if st.unverified and st.unverified.get("head") == head:
            return
        st.unverified = unverified_doc(verdict, head)
        metrics.unverified_total.labels(self.env).inc()
        log.warning("%s", verdict.summary())
        status_mod.emit_event(
            cluster,
            regarding=status_mod.status_object(self.env, namespace),
            reason="Unverified",
            message=f"{verdict.summary()}; {self.env} stays at {deployed[:12]}",
            event_type="Warning",
            namespace=namespace,
        )

    def stored(self) -> dict[str, object]:
        """What the status ConfigMap keeps (``EnvStatus.trust``)."""
        return {"pin": self.pin, "verified": self.verified, "history": list(self.history)}


def unverified_doc(verdict: verification.Verdict, head: str) -> dict[str, object]:
    """The status's ``unverified`` entry: the head refused and the first offending commit."""
    offence = verdict.offence
    return {
        "head": head,
        "commit": offence.commit if offence else head,
        "files": list(offence.files) if offence else [],
        "reason": offence.reason if offence else "not verified",
        "message": verdict.summary(),
        "at": status_mod.now_iso(),
    }
