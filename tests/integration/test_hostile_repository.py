"""Issue 14: input that tries to hurt, as the agents and `promote validate` meet it.

Each environment's agent builds its desired state from the revision it fetches (DesiredState:
real git, real kustomize, no cluster needed up to the objects); one environment's broken file
must never stop another environment's agent.
"""

from __future__ import annotations

import http.server
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from promote.errors import ConfigError, PromoteError
from promote.kustomize import render
from promote.reconcile import desired, source
from promote.reconcile.status import Stage
from tests.gitops import GitOpsRepo, git, make_repo
from tests.helpers import run_cli

if TYPE_CHECKING:
    from tests.gitea_fixture import GiteaServer

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


# --- item 7: rendering in a sandbox ----------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[str]]]:
    """A web server on 127.0.0.1 serving a ConfigMap; the list records every request."""
    requests: list[str] = []
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: planted\ndata:\n  a: b\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def _add_resource(repo: GitOpsRepo, env: str, entry: str) -> None:
    repo.edit(f"overlays/{env}/kustomization.yaml", "resources:\n", f"resources:\n- {entry}\n")


def test_remote_resource_is_refused_and_never_fetched(
    tmp_path: Path, http_server: tuple[str, list[str]]
) -> None:
    url, requests = http_server
    repo = make_repo(tmp_path)
    _add_resource(repo, "dev", f"{url}/base.yaml")
    repo.commit_all("a remote resource")
    res = run_cli("validate", cwd=repo.work)
    assert res.code == 3, res.stderr
    assert f"{url}/base.yaml" in res.stderr and "remote resource" in res.stderr, res.stderr
    assert "render.remoteBases" in res.stderr
    built = _build_all(repo, tmp_path)
    assert isinstance(built["dev"], desired.StageFailed) and "remote" in str(built["dev"])
    assert isinstance(built["staging"], desired.Desired)
    assert requests == []


def test_folder_outside_the_repository_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kustomization.yaml").write_text("resources:\n- cm.yaml\n")
    (outside / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: planted\ndata:\n  a: b\n"
    )
    repo = make_repo(tmp_path)
    _add_resource(repo, "dev", "../../../../../../../../../../.." + str(outside))
    repo.commit_all("a folder outside the repository")
    res = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert res.code == 3 and "is outside the repository" in res.stderr, res.stderr
    assert "overlays/dev/kustomization.yaml: resources:" in res.stderr, res.stderr
    # a link inside the repository that points outside it is the same escape
    os.symlink(outside, repo.work / "overlays/base/outside")
    repo.edit("overlays/dev/kustomization.yaml", "- ../../../", "- ../base/outside\n# ../../../")
    res = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert res.code == 3 and "is outside the repository" in res.stderr, res.stderr


def _pinned_base(tmp_path: Path) -> tuple[str, str]:
    """A second Git repository holding a base (a ConfigMap); its file:// URL and commit."""
    base = tmp_path / "remote-base"
    (base / "cm").mkdir(parents=True)
    (base / "cm/kustomization.yaml").write_text("resources:\n- cm.yaml\n")
    (base / "cm/cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  a: b\n"
    )
    git(base, "init", "-q", "-b", "main")
    git(base, "add", "-A")
    git(base, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "b")
    return f"file://{base}", git(base, "rev-parse", "HEAD")


def test_remote_base_pinned_in_promote_yaml_is_allowed(tmp_path: Path) -> None:
    url, sha = _pinned_base(tmp_path)
    repo = make_repo(tmp_path)
    _add_resource(repo, "dev", f"{url}//cm?ref={sha}")
    repo.commit_all("a remote base, not yet allowed")
    res = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert res.code == 3 and "remote resource" in res.stderr, res.stderr
    project = repo.work / "promote.yaml"
    project.write_text(
        project.read_text() + f"render:\n  remoteBases:\n  - url: {url}\n    ref: main\n"
    )
    res = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert res.code == 1 and "is not a commit SHA" in res.stderr, res.stderr
    project.write_text(project.read_text().replace("ref: main", f"ref: {sha}"))
    res = run_cli("validate", "--env", "dev", "-o", "json", cwd=repo.work)
    assert res.code == 0, res.stdout + res.stderr
    repo.commit_all("allow the pinned base")
    built = _desired(repo, "dev", tmp_path)
    objects = built.build(built.fetch()).objects
    assert any(o["metadata"]["name"] == "shared" for o in objects)
    # the same repository at another commit is not what promote.yaml pinned
    repo.edit("overlays/dev/kustomization.yaml", f"?ref={sha}", "?ref=" + "0" * 40)
    res = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert res.code == 3 and "is not pinned to the commit" in res.stderr, res.stderr


# --- item 8: bounded memory, time and size ---------------------------------------------------


def _alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join(f"*a{i - 1}" for _ in range(9))
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_in_a_resource_is_stopped_by_the_memory_budget(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    bomb = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\n" + _alias_bomb()
    (repo.work / "overlays/dev/bomb.yaml").write_text(bomb.replace("a0:", "data:\n  a0:", 1))
    _add_resource(repo, "dev", "bomb.yaml")
    started = time.monotonic()
    res = run_cli(
        "validate", "--env", "dev", cwd=repo.work, env={"PROMOTE_CHILD_MAX_RSS_MB": "300"}
    )
    took = time.monotonic() - started
    assert res.code == 3, res.stdout + res.stderr
    assert "kustomize build was stopped: it used more than 300 MiB" in res.stderr, res.stderr
    assert took < 30, took


@pytest.mark.parametrize("where", ["environments/dev.yaml", "overlays/dev/kustomization.yaml"])
def test_alias_bomb_in_files_promote_reads_is_refused(tmp_path: Path, where: str) -> None:
    repo = make_repo(tmp_path)
    path = repo.work / where
    path.write_text(path.read_text() + "x-bomb:\n" + "".join(
        "  " + line + "\n" for line in _alias_bomb().splitlines()
    ))  # fmt: skip
    started = time.monotonic()
    res = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert res.code in (1, 3), res.stdout + res.stderr
    assert where in res.stderr and "alias bomb" in res.stderr, res.stderr
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(("mib", "field"), [(1.2, "data"), (3, "(whole object)")])
def test_objects_over_the_api_servers_size_limit_are_refused(
    tmp_path: Path, mib: float, field: str
) -> None:
    repo = make_repo(tmp_path)
    value = "x" * int(mib * 1024 * 1024)
    (repo.work / "overlays/dev/big.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  blob: {value}\n"
    )
    _add_resource(repo, "dev", "big.yaml")
    res = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert res.code == 3, res.stdout + res.stderr
    assert f"ConfigMap dev/big: {field}:" in res.stderr, res.stderr
    repo.commit_all("a big ConfigMap")
    state = _desired(repo, "dev", tmp_path)
    with pytest.raises(desired.StageFailed) as failed:
        state.build(state.fetch())
    assert failed.value.stage is Stage.VALIDATE and "ConfigMap dev/big" in str(failed.value)


def test_remote_base_on_a_gitea_server_pinned_to_a_commit(
    tmp_path: Path, gitea: GiteaServer
) -> None:
    """The allowlist against a real Git server: kustomize fetches the pinned commit only."""
    base = tmp_path / "base"
    (base / "cm").mkdir(parents=True)
    (base / "cm/kustomization.yaml").write_text("resources:\n- cm.yaml\n")
    (base / "cm/cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  a: b\n"
    )
    name = gitea.create_repo(f"bases-{uuid.uuid4().hex[:8]}")
    sha = gitea.push_tree(base, repo=name)
    url = f"{gitea.url}/{name}"
    repo = make_repo(tmp_path)
    _add_resource(repo, "dev", f"{url}//cm?ref={sha}")
    res = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert res.code == 3 and "remote resource" in res.stderr, res.stderr
    project = repo.work / "promote.yaml"
    project.write_text(
        project.read_text() + f"render:\n  remoteBases:\n  - url: {url}\n    ref: {sha}\n"
    )
    res = run_cli("validate", "--env", "dev", "-o", "json", cwd=repo.work)
    assert res.code == 0, res.stdout + res.stderr
    repo.commit_all("a remote base pinned to a commit")
    state = _desired(repo, "dev", tmp_path)
    assert any(o["metadata"]["name"] == "shared" for o in state.build(state.fetch()).objects)
    # the branch instead of the commit: refused, although it names the same tree today
    repo.edit("overlays/dev/kustomization.yaml", f"?ref={sha}", "?ref=main")
    res = run_cli("validate", "--env", "dev", cwd=repo.work)
    assert res.code == 3 and "is not pinned to the commit" in res.stderr, res.stderr


def test_link_in_a_shared_base_stops_every_environment_that_reads_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    os.symlink("/etc/passwd", repo.work / "overlays/base/api/passwd.yaml")
    repo.edit("overlays/base/api/kustomization.yaml", "resources:\n", "resources:\n- passwd.yaml\n")
    repo.commit_all("a link out of the repository in a shared base")
    for env, failed in _build_all(repo, tmp_path).items():
        assert isinstance(failed, desired.StageFailed), (env, failed)
        assert "overlays/base/api/passwd.yaml: a link promote will not follow" in str(failed)


def test_agent_commands_read_only_their_own_environment_file(tmp_path: Path) -> None:
    """`promote sync staging` in a checkout whose dev file is garbage is not stopped by it
    (it goes on to the cluster, which this test does not give it)."""
    repo = make_repo(tmp_path)
    (repo.work / "environments/dev.yaml").write_bytes(b"\xff\xfe garbage\n")
    res = run_cli("sync", "staging", "--kubeconfig", str(tmp_path / "none"), cwd=repo.work)
    assert "environments/dev.yaml" not in res.stderr, res.stderr
    res = run_cli("sync", "nowhere", cwd=repo.work)
    assert res.code == 2 and "unknown environment 'nowhere'" in res.stderr, res.stderr
    res = run_cli("sync", "dev", cwd=repo.work)
    assert res.code == 1 and "environments/dev.yaml:1: not UTF-8" in res.stderr, res.stderr


def test_every_child_process_runs_within_a_time_and_a_memory_budget() -> None:
    """childproc (kustomize, sops, git, tar): a child over its memory budget or its time is
    killed, and says which."""
    import sys

    from promote import childproc

    hog = "b = bytearray(400 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
    hog += "import select; select.select([], [], [])\n"  # then wait for ever
    started = time.monotonic()
    with pytest.raises(childproc.Exceeded, match="used more than 100 MiB") as over:
        childproc.run(
            [sys.executable, "-c", hog],
            env=os.environ,
            limits=childproc.Limits(timeout_s=60, max_rss_mb=100),
        )
    assert over.value.what == "memory" and time.monotonic() - started < 10
    with pytest.raises(childproc.Exceeded, match="did not finish within 1s"):
        childproc.run(["tail", "-f", "/dev/null"], env=os.environ, limits=childproc.Limits(1))
    done = childproc.run(["cat"], input=b"x" * (1 << 20), env=os.environ, limits=childproc.Limits())
    assert done.returncode == 0 and len(done.stdout) == 1 << 20


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("patches[0].path", "patches:\n- path: ../../../outside/p.yaml\n"),
        ("configMapGenerator[0].files",
         "configMapGenerator:\n- name: c\n  files:\n  - k=../../../outside/p.yaml\n"),
        ("secretGenerator[0].envs",
         "secretGenerator:\n- name: s\n  envs:\n  - ../../../outside/p.env\n"),
        ("components", "components:\n- https://example.com/org/repo//c?ref=main\n"),
        ("configurations", "configurations:\n- ../../../outside/p.yaml\n"),
        ("openapi.path", "openapi:\n  path: ../../../outside/p.json\n"),
    ],
)  # fmt: skip
def test_every_field_that_names_a_path_is_sandboxed(tmp_path: Path, field: str, text: str) -> None:
    from promote.errors import RenderError
    from promote.kustomize import sandbox

    root = tmp_path / "repo"
    (root / "overlays/dev").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "overlays/dev/kustomization.yaml").write_text(text)
    with pytest.raises(RenderError, match=f"overlays/dev/kustomization.yaml: {re.escape(field)}"):
        sandbox.Sandbox(root).check(root / "overlays/dev")
