"""The demo's "bad release" chapter: verification after deploy fails, the agent rolls back.

Owns the steps, in order: CI publishes a build the local cluster never makes ready (an image
name holding ``/failing/``, see ``stages/stages.yaml``) and dev's verification after deploy
fails when it turns Degraded; the dev agent records the version as rejected on main and opens
a rollback PR to the last verified version; dev1's ``promote to staging`` exits 3 naming the
rejection; dev1 merges the rollback and dev runs the verified version again. Dev verifies
each deploy from the demo's first commit (``configure``), so the pinned trust of staging and
prod never sees a governance change.

Must not: print, start or stop anything, or reveal a secret value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from promote.local import rollout, seed
from promote.local.seed import DemoError
from promote.local.world import World, wait_until

APP, BAD_TAG = rollout.APP, rollout.BAD_TAG
RECORD = f"releases/rejected/{APP}/{BAD_TAG}.yaml"
VERIFY_S = 3  # dev's healthyFor in the demo (real ones are minutes)


class _Story(Protocol):
    w: World
    main: str


def configure(clone: Path) -> None:
    """dev verifies each deploy (healthy for VERIFY_S) and, when one fails, opens a rollback
    PR (``rollback: pr``: the demo shows it before dev1 merges it)."""
    path = clone / "environments" / "dev.yaml"
    text = path.read_text(encoding="utf-8")
    if "\nverification:" in f"\n{text}" or "\nsync:" not in f"\n{text}":
        raise DemoError(f"{path}: expected a sync: section and no verification: yet.")
    settings = f"verification:\n  healthyFor: {VERIFY_S}s\nrollback: pr\n"
    path.write_text(text.replace("sync:\n", settings + "sync:\n", 1), encoding="utf-8")


class BadRelease:
    """The chapter's steps; each returns what it checked or raises a PromoteError."""

    def __init__(self, story: _Story, tag: str) -> None:
        self.story, self.tag = story, tag  # tag: the version dev runs, verified, before
        self.pr = 0

    def steps(self) -> list[tuple[str, str, Callable[[], str]]]:
        return [
            ("bad-version", f"CI publishes {APP}:{BAD_TAG} from a broken build to dev; it "
             "goes Degraded and dev's verification after deploy fails", self.bad_version),
            ("rollback-pr", f"The dev agent rejects {APP} {BAD_TAG} and opens a rollback PR "
             f"to {self.tag}, the last verified version", self.rollback_pr),
            ("rejected-refused", f"dev1 tries to promote it: {APP} {BAD_TAG} is rejected, "
             "exit 3", self.refused),
            ("rollback", f"dev1 merges the rollback; dev runs {APP} {self.tag} again and "
             "verifies it", self.merge_rollback),
        ]  # fmt: skip

    def bad_version(self) -> str:
        w = self.story.w
        verified = _wait_status(w, lambda d: (d.get("last_verified") or {}).get("images"),
                                "a verified version")  # fmt: skip
        if verified.get(APP) != self.tag:
            raise DemoError(f"dev's last verified {APP} is {verified.get(APP)}, not {self.tag}.")
        before = self.story.main
        rollout.commit_bad_build(w, f"CI: {APP} {BAD_TAG} (broken build)")
        self.story.main = seed.main_sha(w.remote)

        def failed(doc: dict[str, Any]) -> dict[str, Any] | None:
            v = doc.get("verification") or {}
            return v if v.get("state") == "Failed" and v["images"].get(APP) == BAD_TAG else None

        v = _wait_status(w, failed, f"verification Failed for {APP} {BAD_TAG}")
        w.narrator.say(f"dev agent /status: verification Failed: {v['reason']}")
        return f"main {before[:8]} -> {self.story.main[:8]}; dev verification Failed: {v['reason']}"

    def rollback_pr(self) -> str:
        w = self.story.w

        def done(doc: dict[str, Any]) -> dict[str, Any] | None:
            rb = doc.get("rollback") or {}
            return rb if (rb.get("images") or {}).get(APP) == BAD_TAG and rb.get("pr") else None

        rb = _wait_status(w, done, "a rollback PR")
        self.pr = int(rb["pr"])
        record = seed.git("show", f"main:{RECORD}", cwd=w.remote)
        if "verification failed in dev" not in record or "evidence:" not in record:
            raise DemoError(f"{RECORD} on main does not say why and where: {record}")
        w.narrator.say(f"{RECORD} on main (pushed by the dev agent, no approval needed):\n"
                       + record.strip())  # fmt: skip
        self.story.main = seed.main_sha(w.remote)
        return f"{RECORD} on main; rollback PR #{self.pr} restores {APP} {self.tag}"

    def refused(self) -> str:
        w = self.story.w
        before = seed.pr_numbers(w.remote)
        result = w.promote("to", "staging", actor="dev1", expect=3)
        said = result.stderr + result.stdout
        if f"{APP} {BAD_TAG} was rejected" not in said or seed.pr_numbers(w.remote) != before:
            raise DemoError(f"`promote to staging` refused, but not for the rejection: {said}")
        line = next(ln.strip(" -") for ln in said.splitlines() if "was rejected" in ln)
        return f"exit 3, no PR opened: {line}"

    def merge_rollback(self) -> str:
        w = self.story.w
        before = self.story.main
        w.promote("merge", str(self.pr), actor="dev1")
        self.story.main = seed.main_sha(w.remote)
        if self.story.main == before:
            raise DemoError(f"merging rollback PR #{self.pr} did not move main.")
        w.wait_synced(("dev",), self.story.main)
        rollout.wait_health(w, "dev", "Healthy", revision=self.story.main)
        image = w.image("dev", APP)
        if not image.endswith(f":{self.tag}"):
            raise DemoError(f"after the rollback dev runs {image}, not {self.tag}.")
        v = self._verified_again()
        return (
            f"PR #{self.pr} merged: main {before[:8]} -> {self.story.main[:8]}; dev {image}, "
            f"verification {v['state']}: {v['reason']}"
        )

    def _verified_again(self) -> dict[str, Any]:
        """dev verifies the restored version (the failed rollout's leftovers must not fail it)
        and starts no second rollback: the status still names the one for BAD_TAG."""
        w = self.story.w

        def judged(doc: dict[str, Any]) -> dict[str, Any] | None:
            v = doc.get("verification") or {}
            restored = (v.get("images") or {}).get(APP) == self.tag
            now = restored and v.get("revision") == self.story.main
            return v if now and v.get("state") != "Running" else None

        v = _wait_status(w, judged, f"a verdict for {APP} {self.tag} after the rollback")
        rb = (w.agent_status("dev") or {}).get("rollback") or {}
        if v["state"] != "Verified" or (rb.get("images") or {}).get(APP) != BAD_TAG:
            raise DemoError(
                f"after the rollback dev's verification of {APP} {self.tag} is {v['state']} "
                f"({v['reason']}) and its rollback status names {rb.get('images')}; expected "
                f"Verified, and the one rollback of {BAD_TAG}."
            )
        w.narrator.say(f"dev agent /status: verification {v['state']}: {v['reason']}")
        return v


def _wait_status(w: World, pick: Callable[[dict[str, Any]], Any], what: str) -> Any:
    found = wait_until(lambda: pick(w.agent_status("dev") or {}),
                       timeout_s=rollout.HEALTH_TIMEOUT_S, step_s=0.25)  # fmt: skip
    if not found:
        last = w.agent_status("dev") or {}
        raise DemoError(
            f"the dev agent did not report {what} within {rollout.HEALTH_TIMEOUT_S:g}s: "
            f"health {last.get('health')}, verification {last.get('verification')}, "
            f"rollback {last.get('rollback')}"
        )
    return found
