"""Whether a commit is promote's own: its change is exactly what its plan trailers reproduce (pure).

promote commits a plan with ``Promote-Env`` and ``Promote-Images`` trailers (``plan.
commit_message``), and ``Promote-Names`` when it also moves an image's ``newName`` (only a
rollback to a state that ran another registry does). Anyone can write such trailers, so they
prove nothing by themselves: a commit counts as promote's own only if re-applying the
trailers' images to its parent's overlay (``overlay.set_images``, bytes around the entries
kept) gives exactly the commit's file, and that file is the only one it changes. Any other
commit on a PR branch must be signed by a registered key (``people.py``). No I/O: the
caller reads the blobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from promote.errors import ConfigError
from promote.kustomize import overlay

TRAILER_ENV = "Promote-Env"
TRAILER_IMAGES = "Promote-Images"
TRAILER_NAMES = "Promote-Names"  # name=newName of the entries whose newName the plan moves


def split_version(version: str) -> tuple[str | None, str | None]:
    """``TAG``, ``TAG@DIGEST`` or ``DIGEST`` -> (tag, digest)."""
    if "@" in version:
        tag, digest = version.split("@", 1)
        return tag or None, digest
    if ":" in version:  # a digest alone (sha256:...); tags cannot contain ':'
        return None, version
    return version, None


def apply_images(
    text: str, images: Sequence[str], display: str, names: Mapping[str, str] | None = None
) -> str | None:
    """``text`` (a kustomization) with each ``name=version`` of ``images`` set, keeping each
    entry's ``newName`` unless ``names`` gives one; None when an image has no entry or the
    file does not parse."""
    try:
        current = {i.name: i for i in overlay.parse_images(text, display)}
        wanted = []
        for item in images:
            name, sep, version = item.partition("=")
            if not sep or name not in current:
                return None
            tag, digest = split_version(version)
            new_name = (names or {}).get(name, current[name].new_name)
            wanted.append(overlay.Image(name, new_name, tag, digest))
        return overlay.set_images(text, wanted, display)
    except ConfigError:
        return None


def images_trailer(trailers: Mapping[str, str]) -> tuple[str, ...]:
    value = trailers.get(TRAILER_IMAGES, "")
    return tuple(item.strip() for item in value.split(",") if item.strip())


def names_trailer(trailers: Mapping[str, str]) -> dict[str, str]:
    value = trailers.get(TRAILER_NAMES, "")
    pairs = (item.strip().partition("=") for item in value.split(","))
    return {name: new for name, sep, new in pairs if sep and name and new}


def own_commit_reason(
    trailers: Mapping[str, str],
    changed: Sequence[str],
    *,
    overlay_file: str | None,
    parent_text: str | None,
    commit_text: str | None,
) -> str | None:
    """Why a commit is NOT promote's own (None: it is).

    ``overlay_file`` is the kustomization of the environment its ``Promote-Env`` names (in the
    trusted tree); ``parent_text``/``commit_text`` that file before and after the commit.
    """
    images = images_trailer(trailers)
    if not trailers.get(TRAILER_ENV) or not images:
        return "it carries no Promote-Env/Promote-Images trailers"
    if overlay_file is None:
        return f"its Promote-Env {trailers[TRAILER_ENV]!r} is not an environment"
    if list(changed) != [overlay_file]:
        others = ", ".join(p for p in changed if p != overlay_file) or "nothing"
        return f"it changes {others}, not only {overlay_file}"
    if parent_text is None or commit_text is None:
        return f"{overlay_file} is missing on one side"
    names = names_trailer(trailers)
    if apply_images(parent_text, images, overlay_file, names) != commit_text:
        return f"its {overlay_file} is not what its Promote-Images trailer reproduces"
    return None
