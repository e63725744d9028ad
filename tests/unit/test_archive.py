"""Unpacking exported trees: plain trees by tar, anything with links by the careful path."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from promote.errors import GitError
from promote.git import archive


def _tar(entries: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """(name, content or None for a folder, link target or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def test_plain_tree_is_unpacked(tmp_path: Path) -> None:
    data = _tar([("overlays/", None, None), ("overlays/k.yaml", b"resources: []\n", None)])
    out = archive.extract(data, tmp_path / "t")
    assert (out / "overlays/k.yaml").read_bytes() == b"resources: []\n"


def test_link_out_of_the_tree_is_left_out_and_refused_where_read(tmp_path: Path) -> None:
    data = _tar([("overlays/", None, None), ("overlays/dev/passwd", None, "/etc/passwd"),
                 ("overlays/prod/k.yaml", b"x: 1\n", None)])  # fmt: skip
    out = archive.extract(data, tmp_path / "t")
    assert not (out / "overlays/dev/passwd").exists()
    assert list(archive.refused_links(out)) == ["overlays/dev/passwd"]
    archive.check_links(out, [out / "overlays/prod"])  # prod does not read it
    with pytest.raises(GitError, match="overlays/dev/passwd: a link promote will not follow"):
        archive.check_links(out, [out / "overlays/dev"])


def test_link_inside_the_tree_is_kept(tmp_path: Path) -> None:
    data = _tar([("a.yaml", b"x: 1\n", None), ("b.yaml", None, "a.yaml")])
    out = archive.extract(data, tmp_path / "t")
    assert (out / "b.yaml").read_text() == "x: 1\n"
