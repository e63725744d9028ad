"""What ``promote status`` and ``promote diff`` report, apart from how the CLI prints it.

``git_images`` reads each environment's images at the remote's main (the agent's Git source),
``read_statuses`` each agent's published status from its cluster; ``release_matrix`` and
``live_differences`` are pure. Secret values never reach a difference: every Secret pair is
redacted before any text is made.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promote import config
from promote.cluster import client, drift
from promote.errors import GitError, PromoteError, RemoteBranchMissing, UsageError
from promote.kustomize import folder
from promote.promotion import diff, provenance
from promote.reconcile import control, factory
from promote.reconcile import source as source_mod
from promote.reconcile import status as status_mod
from promote.reconcile.agent import PassReport
from promote.secrets import redact

ImagesByEnv = dict[str, dict[str, str]]  # env -> app -> version


def git_images(
    project: config.Project, repo_url: str | None = None
) -> tuple[ImagesByEnv, str, config.Project, dict[str, Any]]:
    """Each environment's image versions at the remote's main, that revision, the project
    as main defines it (its pipeline, not the working tree's, decides what is behind), and
    main's release records (``control.main_records``: read while the export exists)."""
    url = repo_url or source_mod.default_url(project.root, project.config.remote)
    src = source_mod.GitSource(
        url, branch=project.config.main_branch, cache_root=factory.cache_root()
    )
    try:
        revision = src.fetch()
    except RemoteBranchMissing as exc:
        raise _empty_repository(project, url) from exc
    with tempfile.TemporaryDirectory(prefix="promote-status-") as tmp:
        # Isolated: one environment's broken file is that column's error, not the command's.
        at_rev = config.load_project(src.export(revision, Path(tmp) / "tree"), isolate=True)
        parsed = {n: folder.read_images(e.overlay_dir) for n, e in at_rev.environments.items()}
        records = control.main_records(at_rev, parsed)
        return images_in(at_rev), revision, at_rev, records


def images_in(project: config.Project) -> ImagesByEnv:
    """Each environment's image versions in ``project``'s files (a checkout or an export)."""
    return {
        name: {img.app: img.version for img in folder.read_images(env.overlay_dir)}
        for name, env in project.environments.items()
    }


def _empty_repository(project: config.Project, url: str) -> GitError:
    remote, main = project.config.remote, project.config.main_branch
    if url == str(project.root):  # no remote: the working clone itself, without a commit
        return GitError(
            f"{project.root}: no commit on {main!r} yet and no Git remote {remote!r}: `promote "
            "status` reads what the agents read, the remote's main.",
            hint=f"Commit the files (`git add -A && git commit -m 'promote init'`), add the "
            f"remote the agents will read (`git remote add {remote} URL`) and push "
            f"(`git push -u {remote} {main}`).",
        )
    return GitError(
        f"{remote} ({url}) has no branch {main!r} yet: nothing has been pushed there.",
        hint=f"Commit the repository and push it: `git add -A && git commit -m 'promote init' "
        f"&& git push -u {remote} {main}`.",
    )


def read_statuses(project: config.Project, ov: factory.Overrides) -> dict[str, dict[str, Any]]:
    """``{env: {"status": dict | None, "error": str | None}}`` from each environment's cluster."""
    out: dict[str, dict[str, Any]] = {}
    for name in project.pipeline(broken=True):
        st: status_mod.EnvStatus | None = None
        error = None
        try:
            env = project.env(name)  # a broken file: its ConfigError is this row's error
            cluster = factory.connect_env(env, ov)
            st = status_mod.read(cluster, env=name, namespace=env.config.cluster.namespace)
        except UsageError:
            raise  # the command line is wrong (--kubeconfig): not one environment's state
        except PromoteError as exc:
            error = str(exc)
        out[name] = {"status": st.to_dict() if st else None, "error": error}
    return out


def release_matrix(
    project: config.Project, images: ImagesByEnv, statuses: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Apps down, environments across: tag in Git, sync, health, behind its upstream; a
    column whose environment file does not load has that error in each cell."""
    matrix = []
    for app_name in sorted({a for m in images.values() for a in m}):
        row: dict[str, Any] = {"app": app_name, "environments": {}}
        for name in project.pipeline(broken=True):
            if name in project.broken:
                row["environments"][name] = {
                    "tag": None,
                    "sync": "Unknown",
                    "health": "Unknown",
                    "behindUpstream": False,
                    "error": str(project.broken[name]),
                }
                continue
            up = project.env(name).upstream
            tag = images.get(name, {}).get(app_name)
            st_doc = (statuses.get(name) or {}).get("status") or {}
            row["environments"][name] = {
                "tag": tag,
                "sync": st_doc.get("sync", "Unknown"),
                "health": st_doc.get("health", "Unknown"),
                "behindUpstream": bool(up and behind(images.get(up, {}).get(app_name), tag)),
                "error": None,
            }
        matrix.append(row)
    return matrix


def behind(upstream: str | None, mine: str | None) -> bool:
    """Whether ``mine`` (a version: tag, ``tag@digest`` or digest) lags ``upstream``'s. A
    digest pinned only here (gates.pinDigests) is the same release as the upstream's tag;
    two digests compare as digests (the content), else the tags do."""
    if upstream is None or upstream == mine:
        return False
    if mine is None:
        return True
    up_tag, up_digest = provenance.split_version(upstream)
    my_tag, my_digest = provenance.split_version(mine)
    if up_digest and my_digest:
        return up_digest != my_digest
    return up_tag != my_tag


def _redacted_pair(live: dict[str, Any] | None, desired: dict[str, Any]) -> tuple[Any, Any]:
    """Live projected onto the fields Git sets (defaults and server fields would be noise)."""
    # The agent's own comparison shape (it leaves out promote.dev/revision, which is not drift),
    # named so the YAML says which object it is.
    shape = drift.comparable(desired)
    meta = desired.get("metadata") or {}
    shape["metadata"] = {
        **{k: meta[k] for k in ("name", "namespace") if k in meta},
        **shape["metadata"],
    }
    before = drift.project(shape, live) if live is not None else None
    before, after = redact.redact_pair(before, shape)
    # Both sides of a changed Secret value read <changed>: label the live one so the unified
    # diff shows the line (the values themselves are never shown).
    for section in redact.SECRET_SECTIONS:
        values = (before or {}).get(section)
        if isinstance(values, dict):
            for k, v in values.items():
                if v == redact.CHANGED:
                    values[k] = "<redacted: live value differs>"
    return before, after


def live_differences(report: PassReport) -> list[dict[str, Any]]:
    """``{"object", "paths", "diff"}`` for each object whose live state differs from Git."""
    entries = []
    for key, live, desired in report.diffs:
        before, after = _redacted_pair(live, desired)
        what = client.describe_key(key)
        entries.append(
            {
                "object": what,
                "paths": report.out_of_sync.get(key, []),
                # An immutable field changed: only deleting and creating the object applies it.
                "replace": key in report.replace,
                "reason": report.replace.get(key, ""),
                "diff": diff.unified(before, after, fromfile=f"live/{what}", tofile=f"git/{what}"),
            }
        )
    return entries
