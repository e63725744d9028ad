"""Registered people: who a GnuPG signature belongs to, read from a policy tree's ``keys/``.

A person is a file ``keys/release-managers/NAME.asc`` or ``keys/developers/NAME.asc`` holding
exactly one public key (DESIGN.md §4): never a flag, ``$PROMOTE_USER`` or ``git config``.
:class:`Registry` reads those files from a tree the caller trusts (main, or the first parent
of a step: never the change being judged), refuses files that break "one key per person, one
person per key" (several primary keys, a private key block, a fingerprint, primary or
subkey, that another person's file also holds), and says whose key verifies a signature: an
approval, a PR's opened signature, a commit's. Verification imports only the sound files into
a throw-away keyring (``secrets.gpg.KeyRing``); the user's keyring is never trusted.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from promote.errors import ConfigError, PromoteError, UsageError
from promote.promotion import approvals
from promote.secrets import gpg

KEY_DIRS = ("keys/release-managers", "keys/developers")

Status = approvals.SignatureStatus


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    path: str  # repository-relative, e.g. keys/release-managers/rm1.asc
    primaries: tuple[str, ...]
    fingerprints: frozenset[str]
    private: bool


@dataclass(frozen=True, slots=True)
class Signed:
    """Whose registered key made a signature (``person`` None: nobody's)."""

    person: str | None
    fingerprint: str
    detail: str
    other_key: bool = False  # a well-formed signature by a key no sound file holds
    key_state: gpg.KeyState | None = None  # made by ``person``'s key, now expired or revoked


class Registry:
    """The people registered in ``root`` (a policy tree); a context manager for its keyring."""

    def __init__(self, root: Path, *, where: str = "main") -> None:
        self.where = where
        self.people: dict[str, Person] = {}
        self.problems: dict[str, list[str]] = {}  # person -> what is wrong with their file
        self._texts: dict[str, str] = {}  # path -> armoured text (public keys only)
        seen: dict[str, list[Person]] = {}
        for rel in KEY_DIRS:
            for path in sorted((root / rel).glob("*.asc")) if (root / rel).is_dir() else ():
                self._add(path, f"{rel}/{path.name}", seen)
        for owners in seen.values():
            self._shared(owners)
        self._ring: gpg.KeyRing | None = None
        self._signed: dict[tuple[bytes, str], Signed] = {}  # verifications already made
        self._verifying = threading.Lock()  # guards the keyring and ``_pending``
        self._pending: dict[tuple[bytes, str], threading.Lock] = {}
        self.verifications = 0  # gpg verifications run (the agent's bench reports them)

    def _add(self, path: Path, rel: str, seen: dict[str, list[Person]]) -> None:
        name = path.name.removesuffix(".asc")
        if not approvals.valid_name(name):
            return
        text = path.read_text(encoding="utf-8", errors="replace")
        facts = gpg.scan_key_file(text)
        if not facts.private:
            self._texts[rel] = text
        person = Person(name, rel, facts.primaries, facts.fingerprints, facts.private)
        if name in self.people:
            self._problem(name, f"{rel} and {self.people[name].path} both register {name}")
            return
        self.people[name] = person
        if facts.private:
            self._problem(
                name,
                f"{rel} holds a PGP PRIVATE key block; replace it with the public key only "
                "(`gpg --armor --export ID`) and rotate that key: it is in Git history",
            )
        elif not facts.primaries:
            self._problem(name, f"{rel} holds no PGP public key; export it again")
        elif len(facts.primaries) > 1:
            self._problem(
                name,
                f"{rel} holds {len(facts.primaries)} public keys ({', '.join(facts.primaries)}); "
                f"one key per person: keep only {name}'s",
            )
        for fpr in facts.fingerprints:
            seen.setdefault(fpr, []).append(person)

    def _shared(self, owners: list[Person]) -> None:
        if len({p.name for p in owners}) < 2:
            return
        files = ", ".join(sorted(p.path for p in owners))
        for p in owners:
            shared = sorted(set.intersection(*(set(o.fingerprints) for o in owners)))
            self._problem(
                p.name,
                f"{files} hold the same key ({shared[0] if shared else '?'}); one person per "
                "key: remove it from the files it does not belong to",
            )

    def _problem(self, name: str, text: str) -> None:
        found = self.problems.setdefault(name, [])
        if text not in found:
            found.append(text)

    # --- reading ------------------------------------------------------------------------------

    def all_problems(self) -> list[str]:
        """Each file's problems, once (``validate``, ``history`` and the CLI show them)."""
        return list(dict.fromkeys(t for texts in self.problems.values() for t in texts))

    def sound(self, name: str) -> Person | None:
        """``name``'s registration when it is usable (registered, one public key, unshared)."""
        found = self.people.get(name)
        return found if found is not None and name not in self.problems else None

    def why_unusable(self, name: str) -> str:
        if name in self.problems:
            return "; ".join(self.problems[name])
        dirs = " or ".join(f"{d}/" for d in KEY_DIRS)
        return f"{name} has no key file ({name}.asc) in {dirs} on {self.where}"

    def holding(self, secret_fingerprints: Iterable[str]) -> list[str]:
        """Sound people whose primary key is among ``secret_fingerprints`` (a user's keyring)."""
        have = {f.upper() for f in secret_fingerprints}
        return sorted(
            n for n, p in self.people.items() if self.sound(n) and have & set(p.primaries)
        )

    # --- verifying ----------------------------------------------------------------------------

    def who_signed(self, payload: bytes, signature: str) -> Signed:
        """The sound registered person whose key verifies ``signature`` over ``payload``
        (remembered: a registry kept for many checks, as the agent keeps one per policy tree,
        runs gpg once per signature)."""
        key = (payload, signature)
        found = self._signed.get(key)
        if found is not None:
            return found
        with self._verifying:  # one gpg per signature: a prefetch may be verifying it now
            lock = self._pending.setdefault(key, threading.Lock())
        with lock:
            found = self._signed.get(key)
            if found is None:
                found = self._signed[key] = self._who_signed(payload, signature)
        return found

    def prefetch(self, signed: Iterable[tuple[bytes, str]]) -> None:
        """Verify ``(payload, signature)`` pairs ahead of :meth:`who_signed` (the agent runs
        this in a thread while Git answers its other questions), one gpg each, side by side.
        A failure is left for :meth:`who_signed` to raise where it is asked."""
        with contextlib.suppress(PromoteError):
            self._keyring()
            todo = [pair for pair in dict.fromkeys(signed) if pair not in self._signed]
            workers = [
                threading.Thread(target=self._quietly, args=pair, daemon=True) for pair in todo
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()

    def _quietly(self, payload: bytes, signature: str) -> None:
        with contextlib.suppress(PromoteError):
            self.who_signed(payload, signature)

    def _who_signed(self, payload: bytes, signature: str) -> Signed:
        ring = self._keyring()
        if ring is None:
            return Signed(None, "", f"no sound key file in {', '.join(KEY_DIRS)} on {self.where}")
        self.verifications += 1
        result = ring.verify(payload, signature)
        if not result.valid and result.key_state is not None:
            # A genuine signature by a registered key that has expired or been revoked since.
            for name, person in self.people.items():
                if result.fingerprint in person.primaries and self.sound(name):
                    return Signed(
                        name, result.fingerprint, result.detail, key_state=result.key_state
                    )
        if not result.valid:
            return Signed(None, result.fingerprint, result.detail, result.other_key)
        for name, person in self.people.items():
            if result.fingerprint in person.primaries and self.sound(name):
                return Signed(name, result.fingerprint, "signature valid")
        return Signed(None, result.fingerprint, f"signed by {result.fingerprint}", True)

    def check_approval(self, approver: str, payload: str, signature: str) -> tuple[Status, str]:
        """An approval's signature status: VALID only when made by ``approver``'s own key."""
        if not self.sound(approver):
            status = Status.BAD_KEY if approver in self.problems else Status.NO_KEY
            return status, self.why_unusable(approver)
        signed = self.who_signed(payload.encode(), signature)
        if signed.person == approver and signed.key_state is gpg.KeyState.EXPIRED:
            return Status.KEY_EXPIRED, signed.fingerprint
        if signed.person == approver and signed.key_state is gpg.KeyState.REVOKED:
            return Status.KEY_REVOKED, signed.fingerprint
        if signed.person == approver:
            return Status.VALID, signed.fingerprint
        if signed.person is not None:
            return Status.WRONG_KEY, f"signed with {signed.person}'s key, not {approver}'s"
        if signed.other_key:
            return Status.WRONG_KEY, f"{signed.detail}, not {approver}'s key"
        return Status.BAD, signed.detail

    def _keyring(self) -> gpg.KeyRing | None:
        with self._verifying:  # prefetch threads ask at once: one keyring
            if self._ring is None:
                texts = [self._texts[p.path] for n, p in self.people.items() if self.sound(n)]
                if not texts:
                    return None
                self._ring = gpg.KeyRing("\n".join(texts))
            return self._ring

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None


def choose_signer(
    reg: Registry, secret_fingerprints: Iterable[str], *, name: str | None
) -> str | None:
    """Whose registered key signs for the user: ``name`` (``--as``), else the one registered
    person whose secret key the user's keyring holds; None when it holds none."""
    if name:
        if reg.sound(name) is None:
            raise ConfigError(
                f"--as {name}: {reg.why_unusable(name)}; register your public key as "
                f"keys/developers/{name}.asc (or keys/release-managers/) and merge it first."
            )
        return name
    holding = reg.holding(secret_fingerprints)
    if len(holding) > 1:
        raise UsageError(
            f"your GnuPG keyring holds the secret keys of {', '.join(holding)}; say whose key "
            "signs with --as NAME (or $PROMOTE_USER)."
        )
    return holding[0] if holding else None
