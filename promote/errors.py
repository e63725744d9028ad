"""The one exception tree of promote, and the process exit codes.

Every error we raise on purpose is a :class:`PromoteError`. Each class carries the exit code
the CLI returns for it and whether the reconcile loop may retry it. Adapters translate
third-party exceptions into these classes at their edge (chained with ``from exc``); nothing
above an adapter catches a library's exception.

Exit codes (also in the README):

====  ===========================================================
0     ok
1     error (:class:`PromoteError` and every adapter error)
2     usage: a flag, an argument, an environment name (:class:`UsageError`), a PR number
      that names no PR (:class:`UnknownPullRequest`)
3     blocked by policy: approvals, missing secret keys, gates, validation (:class:`PolicyBlocked`)
4     differences found (``promote diff``; a result, not an error: :class:`ExitCode`)
====  ===========================================================

Messages are one paragraph: what failed, where (file, field, object), and how to fix it.
They never contain a secret value.
"""

from __future__ import annotations

import enum
import os
from typing import ClassVar, Self


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    BLOCKED = 3
    DIFFERENCES = 4


class PromoteError(Exception):
    """Base of everything promote raises on purpose (exit 1)."""

    exit_code: ClassVar[int] = ExitCode.ERROR
    retryable: ClassVar[bool] = False
    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def relative_to(self, root: str | os.PathLike[str]) -> Self:
        """Name files under ``root`` (an exported tree, a scratch folder) by their path in the
        repository: ``overlays/dev``, never ``/dev/shm/promote-main-…/tree/overlays/dev``."""
        for prefix in dict.fromkeys((os.fspath(root), os.path.realpath(root))):
            for attr in ("message", "hint"):
                text = getattr(self, attr)
                if text:
                    setattr(self, attr, text.replace(prefix + os.sep, "").replace(prefix, "."))
        return self

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} {self.hint}"
        return self.message


class UsageError(PromoteError):
    """The command line is wrong: a flag, an argument, an environment name (exit 2)."""

    exit_code = ExitCode.USAGE
    code = "usage"


class ConfigError(PromoteError):
    """One of our YAML files is wrong; the message names the file, the field and the fix.
    ``problems``: every fault found when several files are checked at once (``validate``)."""

    code = "config"

    def __init__(
        self, message: str, *, hint: str | None = None, problems: list[str] | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])


class PolicyBlocked(PromoteError):
    """A policy says no: approvals, missing secret keys, gates, validation findings (exit 3)."""

    exit_code = ExitCode.BLOCKED
    code = "blocked"

    def __init__(
        self, message: str, *, hint: str | None = None, problems: list[str] | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])


class GitError(PromoteError):
    code = "git"


class GitUnavailable(GitError):
    """The remote cannot be reached; the loop retries."""

    retryable = True


class RemoteBranchMissing(GitError):
    """The remote has no such branch (an empty repository: nothing pushed yet)."""

    def __init__(self, message: str, *, branch: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.branch = branch


class PushRejected(GitError):
    """A push lost a race (non-fast-forward or a ref that moved); callers rebase and retry."""

    retryable = True


class RenderError(PromoteError):
    code = "render"


class SopsError(PromoteError):
    code = "sops"


class NoKeyError(SopsError):
    """No master key available here can unwrap a file's data key (sops exit 128).

    A subclass so batch operations (``keys sync``) can list such files and go on.
    """


class VaultError(PromoteError):
    code = "vault"


class VaultUnavailable(VaultError):
    retryable = True


class KeyFileError(PromoteError):
    code = "keys"


class GpgError(PromoteError):
    code = "gpg"


class ForgeError(PromoteError):
    code = "forge"


class ForgeUnavailable(ForgeError):
    retryable = True


class ClusterError(PromoteError):
    code = "cluster"


class ClusterUnavailable(ClusterError):
    """5xx, 429, connection refused: the loop backs off and retries."""

    retryable = True


class NotFound(PromoteError):
    """Something the user named does not exist (a PR, an environment's overlay, a revision)."""

    code = "not-found"


class RegistryError(PromoteError):
    """An OCI registry or the supply-chain tools (crane, cosign) failed; names image and fix."""

    code = "registry"


class UnknownPullRequest(NotFound):
    """The PR number on the command line names no pull request: a usage error (exit 2)."""

    exit_code = ExitCode.USAGE
