"""``promote cluster up|down|status``: a local Kubernetes cluster to try promote against."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import typer

from promote import errors
from promote.cli.output import Format, OutputOpt, console, emit_json, handled, progress
from promote.local import controlplane, nodes


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
NodesOpt = typer.Option(
    3,
    "--nodes",
    min=0,
    help="Fake kwok Nodes, with kube-controller-manager and kube-scheduler, so Deployments roll "
    "out; 0 runs kube-apiserver + etcd only (nothing is scheduled).",
)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="A local Kubernetes cluster on 127.0.0.1: kube-apiserver + etcd, controllers, "
        "scheduler and fake kwok Nodes.",
        no_args_is_help=True,
    )
    group.command("up")(up)
    group.command("down")(down)
    group.command("status")(status)
    app.add_typer(group, name="cluster")


def _payload(
    state: controlplane.ClusterState,
    *,
    running: bool,
    nodes: list[nodes.NodeInfo] | None = None,
) -> dict[str, object]:
    return {
        "running": running,
        "kubeconfig": str(state.info.kubeconfig),
        "server": state.info.server,
        "context": state.info.context,
        "dir": str(state.info.data_dir),
        "version": state.version,
        "pids": state.pids(),
        "nodes": [{"name": n.name, "ready": n.ready} for n in nodes or []],
    }


def _nodes(state: controlplane.ClusterState) -> list[nodes.NodeInfo]:
    if not state.nodes:
        return []
    port = int(state.info.server.rsplit(":", 1)[1])
    try:
        return nodes.list_nodes(nodes.Api(port, state.info.data_dir / "pki"))
    except (OSError, errors.ClusterError):
        return []


def up(directory: Path | None = DirOpt, nodes: int = NodesOpt, output: Format = OutputOpt) -> None:
    """Start the cluster in the background (or reuse it) and print its kubeconfig."""
    what = "etcd and kube-apiserver" + (f", controllers and {nodes} kwok nodes" if nodes else "")
    with handled(output), progress(f"Starting {what}...", output):
        state = controlplane.up(directory or _default_dir(), nodes=nodes)
    if output == Format.json:
        emit_json(_payload(state, running=True, nodes=_nodes(state)))
        return
    kubeconfig = shlex.quote(str(state.info.kubeconfig))
    console.print(f"Cluster {state.version} is up at {state.info.server}", markup=False)
    console.print(_describe(state), markup=False)
    console.print(f"kubeconfig: {state.info.kubeconfig}", markup=False)
    console.print(f"export KUBECONFIG={kubeconfig}", markup=False)


def down(directory: Path | None = DirOpt, output: Format = OutputOpt) -> None:
    """Stop every process of the cluster (by PID) and delete its directory."""
    with handled(output):
        state = controlplane.down(directory or _default_dir())
    if output == Format.json:
        emit_json({"stopped": state is not None})
        return
    console.print("Cluster stopped and removed." if state else "No cluster was running.")


def status(directory: Path | None = DirOpt, output: Format = OutputOpt) -> None:
    """Show whether the cluster is running, where, its processes and its nodes."""
    with handled(output):
        where = (directory or _default_dir()).expanduser()
        state = controlplane.read_state(where)
        running = state is not None and controlplane.is_running(state)
        nodes = _nodes(state) if state is not None and running else []
    if output == Format.json:
        emit_json(_payload(state, running=running, nodes=nodes) if state else {"running": False})
        return
    if state is None:
        console.print(
            f"No cluster in {where}. Start one with `promote cluster up`; for one started "
            "with --dir elsewhere, pass that --dir (or set PROMOTE_CLUSTER_DIR).",
            markup=False,
        )
        return
    word = "running" if running else "stopped (run `promote cluster up` to restart it)"
    console.print(f"Cluster {state.version} at {state.info.server}: {word}", markup=False)
    console.print(f"kubeconfig: {state.info.kubeconfig}", markup=False)
    console.print(_describe(state), markup=False)
    for node in nodes:
        console.print(f"  node {node.name}: {'Ready' if node.ready else 'NotReady'}", markup=False)


def _describe(state: controlplane.ClusterState) -> str:
    procs = ", ".join(f"{name} (pid {pid})" for name, pid in state.pids().items())
    kind = f"{state.nodes} kwok nodes" if state.nodes else "no nodes: API only"
    return f"components: {procs}; {kind}"
