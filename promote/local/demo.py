"""``promote demo``: the whole story on the example layout, everything local, each step checked.

Owns running the story of ``demo_story.py`` (a local Git forge, fresh age and GnuPG keys, a
local cluster with controllers and kwok nodes, OpenBao, a local OCI registry holding the
story's images signed with cosign, and three agents; CI publishes an image to dev, it is
promoted to staging with one approval and to prod (its tag pinned to the registry's digest, its
signature verified), refused with one approval and merged with two, each past a soak gate;
each agent deploys it and it rolls out Healthy; a
hand-made change in prod is reverted; ``promote status`` shows the result; a broken build goes
Degraded in dev, its verification fails, the dev agent rejects it and opens a rollback PR,
``promote to staging`` refuses it and dev1 merges the rollback (``badrelease.py``);
``promote history`` shows who approved): one :class:`StepResult` per step, stopping at the first
that does not behave as narrated, and cleaning up.

Without ``keep`` everything started is stopped and the directory removed at the end, also on
failure or Ctrl-C; with it, :func:`stop` cleans up later from ``<dir>/demo-state.json``.

Must not: print (the CLI's narrator does), or reveal a secret value (they stay in memory).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from promote.errors import PromoteError
from promote.local import processes, story
from promote.local.seed import DemoError
from promote.local.world import Narrator, StepResult, World, teardown

__all__ = ["DemoError", "Narrator", "Options", "Outcome", "StepResult", "run", "stop"]

_STEP_ERRORS = (PromoteError, OSError, subprocess.SubprocessError, httpx.HTTPError)


@dataclass(frozen=True, slots=True)
class Options:
    directory: Path | None = None  # default: a new temporary directory
    keep: bool = False  # leave everything running for exploring; `promote demo --stop` ends it
    show_views: bool = True  # also run the human views (status, history tables); off for json


@dataclass(slots=True)
class Outcome:
    directory: Path
    kept: bool
    steps: list[StepResult] = field(default_factory=list)
    duration_s: float = 0.0
    pids: dict[str, int] = field(default_factory=dict)
    explore: list[str] = field(default_factory=list)  # commands to try on a kept demo

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)


def run(options: Options, narrator: Narrator) -> Outcome:
    """Run the story; stop and remove everything at the end unless ``options.keep``.

    Returns the outcome whether or not a step failed (``Outcome.failed`` names the first that
    did); raises DemoError only when the directory cannot be used at all.
    """
    directory = _claim(options.directory)
    w = World(directory, narrator)
    narrated = story.Story(w, show_views=options.show_views)
    outcome = Outcome(directory=directory, kept=options.keep)
    steps = narrated.steps()
    total = len(steps) + (0 if options.keep else 1)  # the teardown is narrated too
    started = time.monotonic()
    try:
        w.record()
        for index, (name, title, action) in enumerate(steps, 1):
            narrator.begin(index, total, title)
            t0 = time.monotonic()
            try:
                detail, ok = action(), True
            except _STEP_ERRORS as exc:
                detail, ok = str(exc), False
            result = StepResult(name, title, ok, round(time.monotonic() - t0, 2), detail)
            outcome.steps.append(result)
            narrator.end(result)
            if not ok:
                break
    finally:
        outcome.pids = w.pids()
        if options.keep:
            _keep(w, outcome)
        else:
            title = "Stop everything and remove the demo's directory"
            narrator.begin(total, total, title)
            t0 = time.monotonic()
            problems = teardown(w.state, w.procs)
            stopped = ", ".join(outcome.pids) or "nothing was running"
            detail = "; ".join(problems) or f"stopped {stopped}; removed {directory}"
            result = StepResult(
                "teardown", title, not problems, round(time.monotonic() - t0, 2), detail
            )
            outcome.steps.append(result)
            narrator.end(result)
        outcome.duration_s = round(time.monotonic() - started, 1)
    return outcome


def stop(directory: Path) -> list[str]:
    """Stop a kept demo (agents, OpenBao, the control plane) and remove its directory.

    Returns what could not be done (empty when all went); DemoError when no demo is there.
    """
    directory = directory.expanduser().resolve()
    state = processes.read_state(directory)
    if state is None:
        raise DemoError(
            f"{directory}: no {processes.STATE_FILE}, so no kept demo to stop there.",
            hint="Pass the --dir that `promote demo --keep` printed.",
        )
    return teardown(state)


def _claim(directory: Path | None) -> Path:
    """A fresh directory for the demo: a new temporary one, or ``directory`` if empty."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="promote-demo-")).resolve()
    directory = directory.expanduser().resolve()
    if (directory / processes.STATE_FILE).exists():
        raise DemoError(
            f"{directory}: a kept demo is still there.",
            hint=f"Stop it first: promote demo --stop --dir {shlex.quote(str(directory))}",
        )
    if directory.exists() and any(directory.iterdir()):
        raise DemoError(
            f"{directory}: not empty; the demo removes its directory at the end, so it only "
            "uses a new or empty one.",
            hint="Pass another --dir, or none for a temporary directory.",
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def _keep(w: World, outcome: Outcome) -> None:
    """Leave it running: record it for `promote demo --stop` and say how to look around."""
    token_file = w.private / "prod.vault-token"
    if "prod" in w.vault_tokens and w.private.is_dir():
        # `promote diff prod` resolves prod's Secrets too, so it needs prod's Vault token.
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(w.vault_tokens["prod"] + "\n")
    w.record()
    q = _quote
    clone, kube = q(w.clone), q(w.kubeconfig)
    outcome.explore = [
        f"promote status -C {clone} --kubeconfig {kube}",
        f"kubectl --kubeconfig {kube} get deploy -A",
        f"SOPS_AGE_KEY_FILE={q(w.private / 'prod.agekey')} "
        f'VAULT_TOKEN="$(cat {q(token_file)})" promote diff prod -C {clone} --kubeconfig {kube}',
        f"promote history prod -C {clone}",
        f"promote ui -C {clone} --kubeconfig {kube}   # the dashboard: http://127.0.0.1:8080/",
        *(f"curl -s http://127.0.0.1:{port}/status   # the {env} agent"
          for env, port in w.ports.items()),
        f"promote demo --stop --dir {q(w.dir)}",
    ]  # fmt: skip


def _quote(path: object) -> str:
    return shlex.quote(str(path))
