"""``promote cluster up|down|status``: a local kube-apiserver + etcd to try promote against."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import typer

from promote.cli.output import Format, OutputOpt, console, emit_json, handled, progress
from promote.local import controlplane


def _default_dir() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "promote" / "cluster"


DirOpt = typer.Option(
    None,
    "--dir",
    help="Where the cluster keeps its data, certificates and kubeconfig "
    "(default: $XDG_STATE_HOME/promote/cluster, else ~/.local/state/promote/cluster).",
    envvar="PROMOTE_CLUSTER_DIR",
)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="A local Kubernetes control plane (kube-apiserver + etcd, no nodes) on 127.0.0.1.",
        no_args_is_help=True,
    )
    group.command("up")(up)
    group.command("down")(down)
    group.command("status")(status)
    app.add_typer(group, name="cluster")


def _payload(state: controlplane.ClusterState, *, running: bool) -> dict[str, object]:
    return {
        "running": running,
        "kubeconfig": str(state.info.kubeconfig),
        "server": state.info.server,
        "context": state.info.context,
        "dir": str(state.info.data_dir),
        "version": state.version,
        "pids": {"etcd": state.etcd_pid, "kube-apiserver": state.apiserver_pid},
    }


def up(directory: Path | None = DirOpt, output: Format = OutputOpt) -> None:
    """Start the control plane in the background (or reuse it) and print its kubeconfig."""
    with handled(output), progress("Starting etcd and kube-apiserver...", output):
        state = controlplane.up(directory or _default_dir())
    if output == Format.json:
        emit_json(_payload(state, running=True))
        return
    kubeconfig = shlex.quote(str(state.info.kubeconfig))
    console.print(f"Cluster {state.version} is up at {state.info.server}", markup=False)
    console.print(f"kubeconfig: {state.info.kubeconfig}", markup=False)
    console.print(f"export KUBECONFIG={kubeconfig}", markup=False)


def down(directory: Path | None = DirOpt, output: Format = OutputOpt) -> None:
    """Stop the control plane and delete its directory."""
    with handled(output):
        state = controlplane.down(directory or _default_dir())
    if output == Format.json:
        emit_json({"stopped": state is not None})
        return
    console.print("Cluster stopped and removed." if state else "No cluster was running.")


def status(directory: Path | None = DirOpt, output: Format = OutputOpt) -> None:
    """Show whether the control plane is running, and where."""
    with handled(output):
        state = controlplane.read_state((directory or _default_dir()).expanduser())
        running = state is not None and controlplane.is_running(state)
    if output == Format.json:
        emit_json(_payload(state, running=running) if state else {"running": False})
        return
    if state is None:
        console.print("No cluster. Start one with `promote cluster up`.", markup=False)
        return
    word = "running" if running else "stopped (run `promote cluster up` to restart it)"
    console.print(f"Cluster {state.version} at {state.info.server}: {word}", markup=False)
    console.print(f"kubeconfig: {state.info.kubeconfig}", markup=False)
