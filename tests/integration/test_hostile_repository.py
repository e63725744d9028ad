"""Issue 14: input that tries to hurt, as the agents and `promote validate` meet it.

Each environment's agent builds its desired state from the revision it fetches (DesiredState:
real git, real kustomize, no cluster needed up to the objects); one environment's broken file
must never stop another environment's agent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from promote.errors import ConfigError, PromoteError
from promote.kustomize import render
from promote.reconcile import desired, source
from promote.reconcile.status import Stage
from tests.gitops import GitOpsRepo, make_repo
from tests.helpers import run_cli

pytestmark = pytest.mark.integration

ENVS = ("dev", "staging", "prod")
NAMESPACES = {"dev": "dev", "staging": "staging", "prod": "production"}


def _desired(repo: GitOpsRepo, env: str, tmp: Path) -> desired.DesiredState:
    src = source.GitSource(str(repo.remote), branch="main", cache_root=tmp / f"cache-{env}")
    return desired.DesiredState(
        env=env, namespace=NAMESPACES[env], source=src, kustomize=render.Kustomize(),
        resolver=None, work_dir=tmp,
    )  # fmt: skip


def _build_all(repo: GitOpsRepo, tmp: Path) -> dict[str, desired.Desired | desired.StageFailed]:
    out: dict[str, desired.Desired | desired.StageFailed] = {}
    for env in ENVS:
        state = _desired(repo, env, tmp)
        try:
            out[env] = state.build(state.fetch())
        except desired.StageFailed as exc:
            out[env] = exc
    return out


def test_non_utf8_environment_file_stops_only_its_environment(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo.work / "environments/dev.yaml").write_bytes(
        b"overlay: overlays/dev\nname: \xff\xfe\x80\n"
    )
    repo.commit_all("garbage in dev's file")
    built = _build_all(repo, tmp_path)
    failed = built["dev"]
    assert isinstance(failed, desired.StageFailed) and failed.stage is Stage.RENDER
    assert isinstance(failed.cause, ConfigError)
    assert "environments/dev.yaml" in str(failed) and "UTF-8" in str(failed), str(failed)
    for env in ("staging", "prod"):
        assert isinstance(built[env], desired.Desired), built[env]
    res = run_cli("validate", cwd=repo.work)
    assert res.code == 1 and "Traceback" not in res.stderr, res.stderr
    assert "environments/dev.yaml" in res.stderr and "UTF-8" in res.stderr, res.stderr


@pytest.mark.parametrize(
    "content",
    [b"upstream: [unclosed\n", b"overlay: \x07bell\n", b"\xef\xbb\xbfoverlay: [\n"],
)
def test_every_parse_failure_is_a_config_error_naming_the_file(
    tmp_path: Path, content: bytes
) -> None:
    repo = make_repo(tmp_path)
    (repo.work / "environments/prod.yaml").write_bytes(content)
    res = run_cli("validate", cwd=repo.work)
    assert res.code == 1 and "Traceback" not in res.stderr, res.stderr
    assert "environments/prod.yaml" in res.stderr, res.stderr


def test_link_in_one_overlay_stops_only_its_environment(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    os.symlink("/etc/passwd", repo.work / "overlays/dev/passwd.yaml")
    repo.edit("overlays/dev/kustomization.yaml", "resources:\n", "resources:\n- passwd.yaml\n")
    repo.commit_all("a link out of the repository")
    built = _build_all(repo, tmp_path)
    failed = built["dev"]
    assert isinstance(failed, desired.StageFailed), failed
    assert "overlays/dev/passwd.yaml" in str(failed) and "link" in str(failed), str(failed)
    for env in ("staging", "prod"):
        assert isinstance(built[env], desired.Desired), built[env]
    assert not isinstance(failed.cause, PromoteError) or "root:" not in str(failed)
