"""Unpack a ``git archive`` tarball into a folder: fast when it is plain, careful when not.

Owns one outside system: the ``tar`` binary. Overlays are exported from Git for kustomize
(``promotion/engine.py``, ``reconcile/source.py``). A tree of plain files and folders, the
usual case, goes to ``tar -x`` (C: about twice as fast as Python's tarfile on a 400-file
tree). A tree with links or anything else goes through Python's tarfile with its "data"
filter, which refuses absolute links and links that leave the folder.

A refused link is left out and recorded beside the tree (:func:`refused_links`), not fatal:
one environment's bad link must not stop the agents of the others (issue 14). Whoever renders
an overlay refuses it when the link lies in what that overlay reads (:func:`check_links`).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from promote import childproc
from promote.errors import GitError


def extract(data: bytes, dest: Path) -> Path:
    """Write the files of the tar ``data`` into ``dest`` (created) and return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        plain = all(
            (m.isfile() or m.isdir())
            and not m.name.startswith("/")
            and ".." not in m.name.split("/")
            for m in members
        )
        gnu_tar = shutil.which("tar")
        if not plain or gnu_tar is None:
            refused: dict[str, str] = {}

            def data_only(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
                try:
                    return tarfile.data_filter(member, path)
                except tarfile.FilterError as exc:
                    refused[member.name] = str(exc)
                    return None

            tar.extractall(dest, filter=data_only)
            if refused:
                refused_record(dest).write_text(json.dumps(refused), encoding="utf-8")
            return dest
    try:
        proc = childproc.run(
            [gnu_tar, "-x", "--no-same-owner", "-C", str(dest)],
            input=data,
            env=os.environ,
            limits=childproc.Limits.from_env(os.environ, timeout_s=120),
        )
    except childproc.NotStarted as exc:
        raise GitError(
            f"{dest}: cannot unpack the exported tree: {exc}.", hint="Install GNU tar."
        ) from exc
    except childproc.Exceeded as exc:
        raise GitError(f"{dest}: unpacking the exported tree was stopped: tar {exc}.") from exc
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()[:500]
        raise GitError(f"{dest}: cannot unpack the exported tree ({detail}).")
    return dest


def refused_record(dest: Path) -> Path:
    """Where :func:`extract` records the links it left out of ``dest`` (beside it)."""
    return dest.with_name(f"{dest.name}.refused-links.json")


def refused_links(dest: Path) -> dict[str, str]:
    """Links :func:`extract` left out of ``dest``: {path in the tree: why}."""
    try:
        found: dict[str, str] = json.loads(refused_record(dest).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return found


def check_links(dest: Path, folders: list[Path]) -> None:
    """Refuse (GitError) when a link left out of ``dest`` lies in one of ``folders``."""
    refused = refused_links(dest)
    for folder in folders:
        if not folder.is_relative_to(dest):
            continue
        rel = folder.relative_to(dest).as_posix()
        hits = [n for n in refused if rel == "." or n == rel or n.startswith(rel + "/")]
        if hits:
            raise GitError(
                f"{hits[0]}: a link promote will not follow ({refused[hits[0]]}); links in the "
                "repository must point at files inside it. Replace it with the file itself."
            )


def _inside(name: str) -> bool:
    return not name.startswith("/") and ".." not in name.split("/")


def scratch_dir(prefix: str) -> Path:
    """A new private temporary folder for an exported tree (ciphertext only), in memory when
    it can be: ``/dev/shm`` unless ``$TMPDIR`` names another place. Creating a few hundred
    files there takes ~30 ms, against 80-450 ms on this machine's disk."""
    shm = Path("/dev/shm")
    use_shm = "TMPDIR" not in os.environ and shm.is_dir() and os.access(shm, os.W_OK | os.X_OK)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=shm if use_shm else None))
