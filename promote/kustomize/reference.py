"""The OCI image reference grammar: what an image name, tag and digest may be (pure).

This is the grammar of distribution/reference (``reference.go``/``regexp.go``), which Docker,
containerd and kustomize itself parse image references with::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [ domain "/" ] path-component [ "/" path-component ]*
    domain           := host [ ":" port ]      host: DNS name, IPv4 or [IPv6]
    path-component   := [a-z0-9]+ ( ( [._] | __ | [-]* ) [a-z0-9]+ )*
    tag              := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest           := algorithm ":" hex      sha256: 64, sha384: 96, sha512: 128 lowercase hex

Every value promote writes into an overlay's ``images:`` or takes from the command line is
checked here first (issue 13, finding 7: a "tag" holding a newline and a YAML key used to be
written into the overlay and deployed). The module only answers "is this valid, and if not,
why"; it reads and writes nothing. Messages show the value with ``repr`` so a newline or a
control character is visible, never interpreted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from promote.errors import PromoteError

NAME_MAX = 255  # distribution's NameTotalLengthMax
TAG_MAX = 128

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH}"
_TAG = r"[\w][\w.-]{0,127}"
_ALGORITHM = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
_DIGEST = rf"{_ALGORITHM}:[0-9a-fA-F]{{32,}}"

# re.ASCII: `\w` is [A-Za-z0-9_] as in Go; fullmatch with \Z semantics (no trailing newline).
NAME_RE = re.compile(_NAME, re.ASCII)
TAG_RE = re.compile(_TAG, re.ASCII)
DIGEST_RE = re.compile(_DIGEST, re.ASCII)
REFERENCE_RE = re.compile(
    rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII
)
# Registered algorithms have an exact length and lowercase hex (OCI image-spec descriptor.md).
_REGISTERED = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidReference(PromoteError):
    """A string that is not an image reference (callers re-raise as their own error kind)."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed image reference: ``name[:tag][@digest]``."""

    name: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        return self.name + tag + (f"@{self.digest}" if self.digest else "")


def name_problem(name: str) -> str | None:
    """Why ``name`` is not an image name (``[host[:port]/]path``), or None when it is one."""
    if not name:
        return "the image name is empty"
    if len(name) > NAME_MAX:
        return f"the image name is {len(name)} characters long; it may be at most {NAME_MAX}"
    if NAME_RE.fullmatch(name):
        return None
    if NAME_RE.fullmatch(_with_lower_path(name)):
        return f"{name!r} is not a valid image name: its path must be lowercase"
    return (
        f"{name!r} is not a valid image name: write [HOST[:PORT]/]PATH, each path part "
        "lowercase letters and digits separated by '.', '_', '__' or dashes, and no tag "
        "or digest in it"
    )


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not an image tag, or None when it is one."""
    if TAG_RE.fullmatch(tag):
        return None
    return (
        f"{tag!r} is not a valid image tag: a tag is 1 to {TAG_MAX} ASCII letters, digits, "
        "'_', '.' and '-', not starting with '.' or '-'"
    )


def digest_problem(digest: str) -> str | None:
    """Why ``digest`` is not a content digest (``sha256:`` and 64 lowercase hex), or None."""
    hint = "write ALGORITHM:HEX, e.g. sha256: followed by 64 lowercase hex digits"
    if not DIGEST_RE.fullmatch(digest):
        return f"{digest!r} is not a valid digest: {hint}"
    algorithm, hex_ = digest.split(":", 1)
    want = _REGISTERED.get(algorithm)
    if want is not None and (len(hex_) != want or hex_ != hex_.lower()):
        return f"{digest!r} is not a valid digest: {algorithm} needs {want} lowercase hex digits"
    return None


def parse(ref: str) -> Reference:
    """``name[:tag][@digest]`` split into its parts; :class:`InvalidReference` if it is not one."""
    found = REFERENCE_RE.fullmatch(ref)
    if found is None:
        raise InvalidReference(f"{ref!r} is not a valid image reference (NAME[:TAG][@DIGEST])")
    name, tag, digest = found.group("name", "tag", "digest")
    problem = name_problem(name) or (digest_problem(digest) if digest else None)
    if problem is not None:
        raise InvalidReference(f"{ref!r}: {problem}")
    return Reference(name, tag, digest)


def _looks_like_host(name: str) -> bool:
    first = name.split("/", 1)[0]
    return "." in first or ":" in first or first == "localhost" or first != first.lower()


def _with_lower_path(name: str) -> str:
    if "/" in name and _looks_like_host(name):
        host, path = name.split("/", 1)
        return f"{host}/{path.lower()}"
    return name.lower()
