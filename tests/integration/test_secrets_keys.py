"""Recipients change: `keys sync` re-wraps data keys; `keys remove` and `rotate` rotate them.

Real sops, real age identities. An identity's power is checked by decrypting for real.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from pyrage import x25519

from promote import config, errors
from promote.kustomize import render
from promote.secrets import files, resolve, sops
from promote.secrets.authoring import keys, rekey, store

CANARY = "CANARY-keys-90aa7c"
DB = "overlays/dev/secrets/db.sops.yaml"


def _identity_file(directory: Path, name: str) -> tuple[Path, str]:
    identity = x25519.Identity.generate()
    path = directory / f"{name}.agekey"
    path.write_text(f"{identity}\n")
    path.chmod(0o600)
    return path, str(identity.to_public())


def _can_decrypt(project: config.Project, env: str, identity: Path) -> bool:
    environ = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]}
    res = resolve.Resolver.for_environment(
        project.env(env), environ={**environ, "SOPS_AGE_KEY_FILE": str(identity)}
    )
    try:
        out = res.resolve(render.render(project.env(env).overlay_dir))
    except sops.NoKeyError:
        return False
    return any(o["kind"] == "Secret" for o in out)


def _enc_blocks(repo: Path) -> dict[str, Any]:
    doc = files.load_document(repo / DB)
    return {
        "values": dict(doc["stringData"]),
        "recipients": sorted(a["recipient"] for a in doc["sops"]["age"]),
    }


@pytest.fixture
def dev_project(secrets_repo: Path) -> tuple[config.Project, Path]:
    project = config.load_project(secrets_repo)
    identity, _ = keys.create_age_identity(project, "dev", out=None, environ=os.environ)
    rekey.sync(project, environ=os.environ)
    store.set_secret(
        project, "dev", "db", [store.Assignment("password", CANARY.encode())], environ=os.environ
    )
    return project, identity


def test_sync_after_adding_a_recipient_lets_it_decrypt(
    dev_project: tuple[config.Project, Path], tmp_path: Path
) -> None:
    project, _ = dev_project
    newcomer, recipient = _identity_file(tmp_path, "newcomer")
    assert not _can_decrypt(project, "dev", newcomer)
    keys.add_recipient(project, "dev", recipient, environ=os.environ)
    before = _enc_blocks(project.root)
    report = rekey.sync(project, environ=os.environ)
    assert [(f.file, f.action) for f in report.files] == [(DB, "updated")]
    assert recipient in (project.root / ".sops.yaml").read_text()
    after = _enc_blocks(project.root)
    assert recipient in after["recipients"]
    assert after["values"] == before["values"]  # re-wrapped, not re-encrypted
    assert _can_decrypt(project, "dev", newcomer)
    # A second sync has nothing to do.
    assert [f.action for f in rekey.sync(project, environ=os.environ).files] == ["current"]


def test_removing_a_recipient_rewraps_and_rotates_so_it_cannot_decrypt(
    dev_project: tuple[config.Project, Path], tmp_path: Path
) -> None:
    project, original = dev_project
    newcomer, recipient = _identity_file(tmp_path, "newcomer")
    keys.add_recipient(project, "dev", recipient, environ=os.environ)
    rekey.sync(project, environ=os.environ)
    before = _enc_blocks(project.root)
    # The original identity leaves; the newcomer (held here) does the re-wrapping.
    removed_recipient = next(r for r in before["recipients"] if r != recipient)
    saved = tmp_path / "original.agekey"
    shutil.move(original, saved)
    environ = {**os.environ, "SOPS_AGE_KEY_FILE": str(newcomer)}
    keys.remove_recipient(project, "dev", removed_recipient, environ=environ)
    report = rekey.sync(project, environ=environ, envs=["dev"], rotate={"dev"})
    assert [(f.file, f.action) for f in report.files] == [(DB, "rotated")]
    after = _enc_blocks(project.root)
    assert after["recipients"] == [recipient]
    assert after["values"]["password"] != before["values"]["password"]  # new data key
    assert not _can_decrypt(project, "dev", saved)
    assert _can_decrypt(project, "dev", newcomer)


def test_sync_without_a_private_key_lists_each_file_left_unchanged(
    dev_project: tuple[config.Project, Path], tmp_path: Path
) -> None:
    project, original = dev_project
    shutil.move(original, tmp_path / "away.agekey")  # nobody here can decrypt dev now
    _, recipient = _identity_file(tmp_path, "newcomer")
    old = _enc_blocks(project.root)["recipients"]
    keys.add_recipient(project, "dev", recipient, environ=os.environ)
    report = rekey.sync(project, environ=os.environ)
    assert recipient in (project.root / ".sops.yaml").read_text()  # config still updated
    (blocked,) = report.blocked
    assert blocked.file == DB and list(blocked.needs) == old
    assert "no key of this environment can decrypt it" in blocked.reason
    error = rekey.blocked_error(report, "keys sync")
    assert error.exit_code == errors.ExitCode.BLOCKED
    assert DB in error.problems[0] and old[0] in error.problems[0]
    assert _enc_blocks(project.root)["recipients"] == old  # left unchanged


def test_rotate_gives_every_file_a_new_data_key(
    dev_project: tuple[config.Project, Path],
) -> None:
    project, identity = dev_project
    store.set_secret(
        project, "dev", "api", [store.Assignment("token", b"t0k3n")], environ=os.environ
    )
    before = _enc_blocks(project.root)
    report = rekey.rotate_env(project, "dev", environ=os.environ)
    assert sorted(f.action for f in report.files) == ["rotated", "rotated"]
    assert _enc_blocks(project.root)["values"] != before["values"]
    assert _can_decrypt(project, "dev", identity)
    doc = files.load_document(project.root / DB)
    assert doc["sops"]["mac_only_encrypted"] is True
    assert doc["sops"]["encrypted_regex"] == "^(data|stringData)$"


def test_remove_of_an_unknown_recipient_changes_nothing(
    dev_project: tuple[config.Project, Path],
) -> None:
    project, _ = dev_project
    stranger = str(x25519.Identity.generate().to_public())
    with pytest.raises(errors.UsageError, match="is not a recipient of dev"):
        keys.remove_recipient(project, "dev", stranger, environ=os.environ)


def test_unknown_recipient_format_is_a_usage_error(secrets_repo: Path) -> None:
    project = config.load_project(secrets_repo)
    with pytest.raises(errors.UsageError, match="not a recipient promote knows"):
        keys.add_recipient(project, "dev", "hello", environ=os.environ)
