"""The agent rebuilds only the chunks of a large overlay whose inputs a new revision changed.

Issue 19: a commit pushed straight to main (never rendered before) went live in 2.2 s at 1,000
objects, most of it one whole ``kustomize build``. The agent keeps each chunk's render by the
Git blobs of every file the chunk reads (``reconcile/chunkcache.py``). These tests hold what
it deploys to a fresh agent's render of the same revision (real git, real kustomize), and
count the chunks it built.
"""

from __future__ import annotations

import base64
import gc
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyrage
import pytest

from promote import config
from promote.kustomize import folder, render
from promote.reconcile import chunkcache, desired, exported, source
from promote.secrets import resolve
from tests.gitops import app_manifests, git

APPS = chunkcache.CHUNK_FOLDERS * 2 + 3  # three of the agent's chunks, the last one short
CHUNKS = 3


def _app(name: str, level: str = "info") -> str:
    return app_manifests(name, f"LEVEL: {level}")


class Repo:
    """A bare remote and a clone: overlays/base/<app>/ and overlays/env/<app>/ per app."""

    def __init__(self, tmp: Path) -> None:
        self.remote, self.work = tmp / "remote.git", tmp / "work"
        git(tmp, "init", "-q", "--bare", "-b", "main", str(self.remote))
        self.work.mkdir()
        git(self.work, "init", "-q", "-b", "main")
        git(self.work, "remote", "add", "origin", str(self.remote))
        (self.work / "promote.yaml").write_text("mainBranch: main\n")
        (self.work / "environments").mkdir()
        (self.work / "environments" / "env.yaml").write_text(
            "overlay: overlays/env\ncluster:\n  namespace: chunks\n"
        )
        self.names = [f"app{i:03d}" for i in range(APPS)]
        for name in self.names:
            self.write(f"overlays/base/{name}/app.yaml", _app(name))
            self.write(f"overlays/base/{name}/kustomization.yaml", "resources:\n- app.yaml\n")
            self.write(
                f"overlays/env/{name}/kustomization.yaml", f"resources:\n- ../../base/{name}\n"
            )
        self.top(self.names)

    def write(self, rel: str, text: str) -> None:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def top(self, folders: list[str], extra: str = "") -> None:
        lines = "".join(f"- {f}\n" for f in folders)
        self.write("overlays/env/kustomization.yaml", f"{extra}resources:\n{lines}")

    def commit(self) -> str:
        git(self.work, "add", "-A")
        git(self.work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
        git(self.work, "push", "-q", "origin", "HEAD:main")
        return git(self.work, "rev-parse", "HEAD")


def _state(repo: Repo, cache: Path) -> desired.DesiredState:
    src = source.GitSource(str(repo.remote), branch="main", cache_root=cache)
    return desired.DesiredState(
        env="env", namespace="chunks", source=src, kustomize=render.Kustomize(), resolver=None,
        work_dir=cache.parent,
    )  # fmt: skip


def _canon(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(map(repr, objects))


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    r = Repo(tmp_path)
    r.commit()
    return r


def _deploy(state: desired.DesiredState, repo: Repo, tmp: Path) -> list[dict[str, Any]]:
    """What ``state`` deploys at main's head, checked against a fresh agent's render."""
    revision = state.fetch()
    got = state.build(revision).objects
    fresh = _state(repo, tmp / f"fresh-{revision[:12]}")
    assert _canon(got) == _canon(fresh.build(fresh.fetch()).objects)
    return got


def _built(state: desired.DesiredState, before: int) -> int:
    """Chunks built since ``before`` (the chunk cache's misses then)."""
    return state.chunks.misses - before


def _data(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objects if o["metadata"]["name"] == name)["data"]


def test_a_commit_changing_one_app_rebuilds_only_its_chunk(repo: Repo, tmp_path: Path) -> None:
    state = _state(repo, tmp_path / "agent")
    _deploy(state, repo, tmp_path)
    assert state.chunks.misses == CHUNKS
    last = repo.names[-1]
    repo.write(f"overlays/base/{last}/app.yaml", _app(last, level="debug"))  # a base's file
    repo.commit()
    before = state.chunks.misses
    objects = _deploy(state, repo, tmp_path)
    assert _built(state, before) == 1
    assert _data(objects, f"{last}-config") == {"LEVEL": "debug"}


@pytest.mark.parametrize(
    ("rel", "text", "check"),
    [
        # the app folder's own kustomization: a label on its objects
        (
            "overlays/env/app000/kustomization.yaml",
            "resources:\n- ../../base/app000\nlabels:\n- pairs: {team: a}\n",
            lambda objs: (
                next(o for o in objs if o["metadata"]["name"] == "app000-config")["metadata"][
                    "labels"
                ]["team"]
                == "a"
            ),
        ),
        # the base's kustomization names a new file of the base
        (
            "overlays/base/app000/kustomization.yaml",
            "resources:\n- app.yaml\n- extra.yaml\n",
            lambda objs: any(o["metadata"]["name"] == "app000-extra" for o in objs),
        ),
    ],
)
def test_any_file_a_chunk_reads_rebuilds_that_chunk(
    repo: Repo, tmp_path: Path, rel: str, text: str, check: Any
) -> None:
    state = _state(repo, tmp_path / "agent")
    _deploy(state, repo, tmp_path)
    repo.write(
        "overlays/base/app000/extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app000-extra}\n",
    )
    repo.commit()  # a file no kustomization names yet: over-approximated, rebuilt, same objects
    before = state.chunks.misses
    _deploy(state, repo, tmp_path)
    assert _built(state, before) == 1
    repo.write(rel, text)
    repo.commit()
    before = state.chunks.misses
    objects = _deploy(state, repo, tmp_path)
    assert _built(state, before) == 1
    assert check(objects)


def test_top_kustomization_that_renames_is_one_build_again(repo: Repo, tmp_path: Path) -> None:
    state = _state(repo, tmp_path / "agent")
    _deploy(state, repo, tmp_path)
    repo.top(repo.names, extra="namePrefix: team-\n")  # shards.plan: one build
    repo.commit()
    before = (state.chunks.misses, state.chunks.hits)
    objects = _deploy(state, repo, tmp_path)
    assert (state.chunks.misses, state.chunks.hits) == before  # no chunk used
    dep = next(o for o in objects if o["metadata"]["name"] == "team-app000")
    ref = dep["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]
    assert ref["name"] == "team-app000-config"  # the name reference followed the rename
    repo.top(repo.names)  # a plain list again, and one app changed: the kept chunks serve
    repo.write("overlays/base/app000/app.yaml", _app("app000", level="debug"))
    repo.commit()
    before = (state.chunks.misses, state.chunks.hits)
    objects = _deploy(state, repo, tmp_path)
    assert (state.chunks.misses - before[0], state.chunks.hits - before[1]) == (1, CHUNKS - 1)
    assert _data(objects, "app000-config") == {"LEVEL": "debug"}


def test_an_app_folder_that_renames_makes_the_overlay_one_build(repo: Repo, tmp_path: Path) -> None:
    state = _state(repo, tmp_path / "agent")
    _deploy(state, repo, tmp_path)
    repo.write(
        "overlays/env/app005/kustomization.yaml",
        "resources:\n- ../../base/app005\nnamePrefix: x-\n",
    )
    repo.commit()
    before = (state.chunks.misses, state.chunks.hits)
    objects = _deploy(state, repo, tmp_path)
    assert (state.chunks.misses, state.chunks.hits) == before
    assert any(o["metadata"]["name"] == "x-app005-config" for o in objects)


def test_a_folder_added_to_the_overlay_rebuilds_the_chunks_it_shifts(
    repo: Repo, tmp_path: Path
) -> None:
    state = _state(repo, tmp_path / "agent")
    _deploy(state, repo, tmp_path)
    name = f"app{APPS:03d}"
    repo.write(f"overlays/base/{name}/app.yaml", _app(name))
    repo.write(f"overlays/base/{name}/kustomization.yaml", "resources:\n- app.yaml\n")
    repo.write(f"overlays/env/{name}/kustomization.yaml", f"resources:\n- ../../base/{name}\n")
    repo.top([*repo.names, name])  # appended: the last chunk changes, the others are kept
    repo.commit()
    before = state.chunks.misses
    objects = _deploy(state, repo, tmp_path)
    assert _built(state, before) == 1
    assert any(o["metadata"]["name"] == f"{name}-config" for o in objects)
    repo.top(repo.names[1:])  # the first folder removed: every chunk's folders move
    repo.commit()
    before = state.chunks.misses
    objects = _deploy(state, repo, tmp_path)
    assert _built(state, before) == CHUNKS
    assert not any(o["metadata"]["name"] == "app000-config" for o in objects)


def test_kept_chunks_are_bounded_by_their_objects() -> None:
    cache = chunkcache.ChunkCache(max_objects=10)
    for n in range(5):
        cache.put(f"k{n}", [{"kind": "ConfigMap"}] * 4)
    assert cache.objects <= 10 and len(cache) == 2
    assert cache.get("k0") is None and cache.get("k4") is not None
    cache.put("big", [{"kind": "ConfigMap"}] * 50)  # the newest stays, alone
    assert len(cache) == 1 and cache.get("big") is not None


def test_overlay_inputs_from_known_folders_equal_a_fresh_walk(repo: Repo) -> None:
    # The agent reuses its chunks' walks for the overlay's inputs (the whole render's key).
    env = repo.work / "overlays" / "env"
    known = {(env / n).resolve(): folder.input_paths(repo.work, env / n) for n in repo.names[:40]}
    fresh = folder.input_paths(repo.work, env)
    assert folder.input_paths(repo.work, env, known=known) == fresh
    assert "overlays/base/app039/app.yaml" in fresh and "overlays/env/" in fresh


CANARY = "CANARY-chunks-5e0b91aa"


def test_kept_chunks_hold_ciphertext_only(repo: Repo, tmp_path: Path) -> None:
    ident = pyrage.x25519.Identity.generate()
    plain = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: app000-db}\ntype: Opaque\n"
        f"stringData: {{password: {CANARY}}}\n"
    )
    recipient = str(ident.to_public())
    repo.write("keys/env/age.txt", f"{recipient}\n")  # the environment's recipient
    repo.write(  # as bench/reconcile.py: kustomize rewrites the file, the MAC covers values
        ".sops.yaml",
        "creation_rules:\n- path_regex: overlays/env/.*\\.sops\\.yaml$\n"
        f"  age: {recipient}\n  encrypted_regex: ^(data|stringData)$\n  mac_only_encrypted: true\n",
    )
    sops = Path(sys.executable).parent / "sops"
    argv = [str(sops), "encrypt", "--filename-override", "overlays/env/app000/db.sops.yaml",
            "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin"]  # fmt: skip
    out = subprocess.run(
        argv, input=plain.encode(), capture_output=True, check=True, cwd=repo.work
    ).stdout
    repo.write("overlays/env/app000/db.sops.yaml", out.decode())
    repo.write(
        "overlays/env/app000/kustomization.yaml",
        "resources:\n- ../../base/app000\n- db.sops.yaml\n",
    )
    repo.commit()
    env = config.load_project(repo.work).env("env")
    resolver = resolve.Resolver.for_environment(env, environ={"SOPS_AGE_KEY": str(ident)})
    state = _state(repo, tmp_path / "agent")
    state.resolver = resolver
    built = state.build(state.fetch())
    secret = next(o for o in built.objects if o["kind"] == "Secret")
    assert base64.b64decode(secret["data"]["password"]).decode() == CANARY  # in memory, applied
    kept = repr(list(state.chunks))
    assert len(list(state.chunks)) == len(built.objects) and "ENC[" in kept
    assert CANARY not in kept and base64.b64encode(CANARY.encode()).decode() not in kept


def test_a_change_behind_a_linked_base_rebuilds_its_chunk(repo: Repo, tmp_path: Path) -> None:
    # overlays/base/app000 is a link to a folder elsewhere in the repository: kustomize reads
    # the target's files, so a change there must rebuild the chunk (and it is rebuilt each
    # time: a chunk whose inputs hold a link is not kept).
    base = repo.work / "overlays" / "base"
    (base / "app000").rename(repo.work / "overlays" / "elsewhere")
    (base / "app000").symlink_to("../elsewhere")
    repo.commit()
    state = _state(repo, tmp_path / "agent")
    _deploy(state, repo, tmp_path)
    repo.write("overlays/elsewhere/app.yaml", _app("app000", level="debug"))
    repo.commit()
    objects = _deploy(state, repo, tmp_path)
    assert _data(objects, "app000-config") == {"LEVEL": "debug"}


def _files(root: Path) -> dict[str, str]:
    """Every entry below ``root``: files by content, links by target, folders (empty or not)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = f"-> {path.readlink()}"
        elif path.is_dir():
            out[rel] = "/"
        else:
            out[rel] = path.read_text()
    return out


def test_the_kept_tree_is_what_a_fresh_export_writes(repo: Repo, tmp_path: Path) -> None:
    src = source.GitSource(str(repo.remote), branch="main", cache_root=tmp_path / "cache")
    tree = exported.ExportedTree(tmp_path / "kept" / "tree")

    def check(full: bool) -> None:
        rev = src.fetch()
        before = tree.full_exports
        got = _files(tree.at(src, rev, src.blobs(rev)))
        fresh = tmp_path / f"fresh-{rev[:12]}"
        assert got == _files(src.export(rev, fresh))
        assert (tree.full_exports - before == 1) is full

    check(full=True)
    repo.write("overlays/base/app001/app.yaml", _app("app001", level="debug"))  # changed
    repo.write("overlays/new/deep/x.yaml", "a: 1\n")  # new, in new folders
    (repo.work / "overlays" / "base" / "app002" / "app.yaml").unlink()  # removed
    repo.commit()
    check(full=False)
    (repo.work / "overlays" / "new" / "deep" / "x.yaml").unlink()  # its folders left empty
    repo.commit()
    check(full=False)
    (repo.work / "overlays" / "base" / "app004" / "link.yaml").symlink_to("app.yaml")
    repo.commit()
    check(full=True)  # a link: exported as git archive writes it
    (repo.work / "overlays" / "base" / "app004" / "link.yaml").unlink()
    repo.commit()
    check(full=True)  # the tree held a link: exported again
    repo.write("overlays/.gitattributes", "*.txt export-ignore\n")
    repo.write("overlays/skip.txt", "left out of an export\n")
    repo.commit()
    check(full=True)


def test_scratch_in_memory_unless_tmpdir_names_a_place(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's exported tree and chunk folders (ciphertext only) go where the CLI's
    exports go (``archive.scratch_dir``): /dev/shm, unless $TMPDIR names a place. A render
    leaves nothing there but the kept tree, and the tree goes with the agent."""
    shm = Path("/dev/shm")
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile reads $TMPDIR once, then keeps it
    monkeypatch.delenv("TMPDIR", raising=False)
    in_memory = shm.is_dir() and os.access(shm, os.W_OK | os.X_OK)
    state = desired.DesiredState(
        env="env", namespace="chunks", resolver=None, kustomize=render.Kustomize(),
        source=source.GitSource(str(repo.remote), branch="main", cache_root=tmp_path / "c1"),
    )  # fmt: skip
    assert len(state.build(state.fetch()).objects) == 2 * APPS
    expected = shm if in_memory else Path(tempfile.gettempdir())
    assert state.tree.where.is_relative_to(expected), state.tree.where

    place = tmp_path / "scratch"
    place.mkdir()
    monkeypatch.setenv("TMPDIR", str(place))
    monkeypatch.setattr(tempfile, "tempdir", None)
    state = desired.DesiredState(
        env="env", namespace="chunks", resolver=None, kustomize=render.Kustomize(),
        source=source.GitSource(str(repo.remote), branch="main", cache_root=tmp_path / "c2"),
    )  # fmt: skip
    assert len(state.build(state.fetch()).objects) == 2 * APPS
    kept = state.tree.where.parent
    assert kept.parent == place and [p.name for p in place.iterdir()] == [kept.name]
    del state
    gc.collect()
    assert not kept.exists()
