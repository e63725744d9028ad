"""Who opens a pull request on the local forge: the opened signature, by the user's own
registered key, that says so (DESIGN.md §4: never a flag or ``git config``).

Owns choosing the opener's registered key from the user's keyring (or ``--as``) and making the
signature over (PR, scope, head, base) once the PR has a number. Used by every flow that opens
a PR (promotions, rollbacks, governance changes). Must not: push, open the PR, or decide
whether an approval counts (``approvals``/``judgement`` do).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from promote import config
from promote.errors import ConfigError, PolicyBlocked
from promote.forge import base as forge_base
from promote.promotion import approvals, engine, people
from promote.secrets import gpg


def opened_signer(
    s: engine.Session,
    *,
    env: str,
    scope: Sequence[str],
    base_sha: str,
    policies: Mapping[str, config.ApprovalsConfig],
    opener: str | None,
    signer: gpg.Signer,
) -> tuple[Callable[[str], Callable[[int], forge_base.Opened]] | None, str | None, str | None]:
    """The opened signature of a PR into ``env`` affecting ``scope``, by the user's registered
    key (any PR on the local forge: promotions, rollbacks, lifting a rejection): (a maker of
    it for a head commit, the opener's name, their key's fingerprint to sign commits with).
    ``policies``: the approvals of every environment the PR affects (``scope``). An opener
    may not approve, so one who leaves a policy unmeetable is refused before anything is
    pushed: the PR could never merge."""
    with people.Registry(s.root, where=s.main) as reg:
        name = people.choose_signer(reg, signer.secret_fingerprints(), name=opener)
        person = reg.sound(name) if name else None
        if person is not None:
            _check_opener(person.name, policies, sorted(n for n in reg.people if reg.sound(n)))
    if person is None:
        if any(p.required for p in policies.values()):
            raise ConfigError(
                f"{env} requires approvals, and a PR into it is signed by whoever opens "
                "it; your GnuPG keyring (GNUPGHOME) holds no registered key. Register your "
                "public key as keys/developers/NAME.asc on main (`gpg --armor --export ID`), "
                "or pass --as NAME."
            )
        return None, None, None

    def for_head(head: str) -> Callable[[int], forge_base.Opened]:
        def sign(number: int) -> forge_base.Opened:
            payload = forge_base.opened_payload(
                pr=number,
                env=env,
                scope=list(scope),
                head_sha=head,
                base_sha=base_sha,
                opener=person.name,
                at=datetime.now(UTC),
            )
            sig = signer.sign(payload.encode(), fingerprints=person.primaries, who=person.name)
            return forge_base.Opened(payload, sig)

        return sign

    return for_head, person.name, person.primaries[0]


def _check_opener(
    name: str, policies: Mapping[str, config.ApprovalsConfig], registered: Sequence[str]
) -> None:
    """Refuse ``name`` as the opener when excluding them leaves a policy unmeetable, naming
    the registered people who could open the PR instead."""
    problems = approvals.unmeetable(policies, [name])
    if not problems:
        return
    instead = [n for n in registered if n != name and not approvals.unmeetable(policies, [n])]
    who = ", ".join(instead) or "a registered person who is not an approver"
    raise PolicyBlocked(
        f"{name} may not open this PR: the opener cannot approve it, and {'; '.join(problems)},"
        f" so it could never merge; nothing was pushed. Have someone else open it ({who}), "
        "e.g. with their key in GNUPGHOME or `--as NAME`."
    )
