"""Image references for the supply-chain tools (pure).

An overlay's ``images:`` entry says ``newName`` (or ``name``), ``newTag`` and ``digest``; the
tools take ``registry/repository:tag`` or ``registry/repository@sha256:...``.
"""

from __future__ import annotations

import ipaddress
import re

from promote.kustomize import overlay

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def repository(image: overlay.Image) -> str:
    return image.new_name or image.name


def by_tag(image: overlay.Image) -> str:
    return f"{repository(image)}:{image.new_tag}" if image.new_tag else repository(image)


def by_digest(image: overlay.Image) -> str:
    """The reference to verify: the digest when pinned (what will run), else the tag."""
    return f"{repository(image)}@{image.digest}" if image.digest else by_tag(image)


def registry(name: str) -> str:
    """The registry host of a repository name (Docker's rule: a first part with a dot, a
    colon or ``localhost`` is a host; otherwise it is Docker Hub)."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def is_loopback(host: str) -> bool:
    """Registries on this machine may speak plain HTTP (Docker's default, and crane's and
    cosign's ``--insecure`` flags are passed for them only)."""
    if host.startswith("[") and "]" in host:  # [::1]:5000
        name = host[1 : host.index("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
