"""Rendered overlays kept on disk, found again by the content of what the render read.

``promote to``, ``approve`` and ``merge`` each render the environments a PR affects, before and
after, in new processes and from fresh exports of the same trees; on a 2-core machine each
``kustomize build`` of a 100-app overlay costs seconds. A render is a function of the files it
reads and of the kustomize binary, so its output is kept under a key made of both: the SHA-256
of every file below each path the overlay reads (``folder.input_paths``: its folder, bases,
components, patch and generator files, an over-approximation) with its repository-relative
name, and the binary's path, size and modification time. Any change to any of those files is a
new key; where the files came from (a checkout, an export of a commit) does not matter.

What is kept is kustomize's output, which holds only what the repository holds: Secrets as
SOPS ciphertext (plaintext never reaches kustomize). Files live under
``$PROMOTE_RENDER_STORE``, by default ``$PROMOTE_CACHE/renders`` (mode 0700 folder, 0600
files), gzip-compressed, the ``MAX_ENTRIES`` most recently used kept. An overlay whose
inputs hold a symbolic link is never cached (kustomize follows links; their targets are not
hashed). A remote base is pinned to a
commit in a kustomization's text (the sandbox allows no other), which is part of the key.
``PROMOTE_RENDER_CACHE=off`` turns the store off.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import threading
from pathlib import Path

from promote.kustomize import folder

MAX_ENTRIES = 128  # a 100-app overlay renders to ~100 kB, ~10 kB compressed


def enabled() -> bool:
    return os.environ.get("PROMOTE_RENDER_CACHE", "").lower() not in ("off", "0", "false")


class RenderStore:
    """A folder of renders by input content; ``get`` and ``put`` never raise for I/O."""

    def __init__(self, where: Path, *, binary: str) -> None:
        self.where = where
        self._binary = binary

    def key(self, root: Path, overlay_dir: Path) -> str | None:
        """The key of ``overlay_dir``'s render in the repository at ``root``, or None when it
        cannot be cached (a symbolic link or an unreadable file among its inputs)."""
        digest = hashlib.sha256(f"{self._binary}\0".encode())
        try:
            for rel, path in input_files(root, overlay_dir):
                if path.is_symlink():
                    return None
                digest.update(f"{rel}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            return None
        return digest.hexdigest()

    def get(self, key: str) -> str | None:
        hit = self.where / f"{key}.yaml.gz"
        try:
            text = gzip.decompress(hit.read_bytes()).decode("utf-8")
            hit.touch()
        except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError):
            return None
        return text

    def put(self, key: str, text: str) -> None:
        with contextlib.suppress(OSError):
            self.where.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.where / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(gzip.compress(text.encode("utf-8"), compresslevel=1))
            tmp.replace(self.where / f"{key}.yaml.gz")
            kept = sorted(self.where.glob("*.yaml.gz"), key=_mtime)
            for old in kept[:-MAX_ENTRIES]:
                old.unlink(missing_ok=True)


def input_files(root: Path, overlay_dir: Path) -> list[tuple[str, Path]]:
    """Every file below each input path of ``overlay_dir``, by repository-relative name
    (OSError for a linked folder among them)."""
    top = root.resolve()
    out: dict[str, Path] = {}
    for rel in sorted(folder.input_paths(top, overlay_dir)):
        path = top / rel
        if not rel.endswith("/") and rel:
            out[rel] = path
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            here = Path(dirpath)
            if any((here / d).is_symlink() for d in dirnames):
                raise OSError("a linked folder")  # not followed by os.walk: not cacheable
            for name in filenames:
                out[(here / name).relative_to(top).as_posix()] = here / name
    return sorted(out.items())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
