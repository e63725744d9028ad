"""SOPS secrets with the real sops binary, real age identities and real GnuPG keys.

Files are written through `promote.secrets.store` (as `promote secrets set` does), rendered by
kustomize and resolved in memory by `promote.secrets.resolve`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from pyrage import x25519

from promote import config, errors
from promote.kustomize import render
from promote.promotion import validate
from promote.secrets import files, resolve, sops, values
from promote.secrets.authoring import checks, keys, rekey, store
from tests.conftest import GpgKeyring

CANARY = "CANARY-sops-3b7e41"


def _project(repo: Path) -> config.Project:
    return config.load_project(repo)


def init_age(project: config.Project, env: str) -> Path:
    path, _ = keys.create_age_identity(project, env, out=None, environ=os.environ)
    report = rekey.sync(project, environ=os.environ, envs=[env])
    assert not report.blocked
    return path


def set_values(project: config.Project, env: str, name: str, **values: str | bytes) -> None:
    assignments = [
        store.Assignment(k, v if isinstance(v, bytes) else v.encode()) for k, v in values.items()
    ]
    store.set_secret(project, env, name, assignments, environ=os.environ)


def rendered(project: config.Project, env: str) -> list[dict[str, Any]]:
    return render.render(project.env(env).overlay_dir)


def resolver(project: config.Project, env: str, **environ: str) -> resolve.Resolver:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "VAULT_"))}
    return resolve.Resolver.for_environment(
        project.env(env),
        environ={**base, **environ},
        sources=lambda: files.sources(project, project.env(env)),
    )


def secret(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == name)


def decoded(obj: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in obj["data"].items()}


# --- age -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("decrypt_backend")
def test_age_round_trip_set_render_resolve(secrets_repo: Path) -> None:
    project = _project(secrets_repo)
    identity = init_age(project, "dev")
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    assert not identity.is_relative_to(secrets_repo)
    set_values(project, "dev", "db", password=CANARY, user="admin", blob=b"\xff\x00bin")
    text = (secrets_repo / "overlays/dev/secrets/db.sops.yaml").read_text()
    assert CANARY not in text and "mac_only_encrypted: true" in text
    assert "secrets/db.sops.yaml" in (secrets_repo / "overlays/dev/kustomization.yaml").read_text()

    objects = rendered(project, "dev")
    before = json.dumps(objects)
    res = resolver(project, "dev", SOPS_AGE_KEY_FILE=str(identity))
    out = res.resolve(objects, env="dev")
    assert json.dumps(objects) == before  # the input is not modified
    db = secret(out, "db")
    assert "sops" not in db and "stringData" not in db
    assert db["metadata"]["namespace"] == "dev"
    assert decoded(db) == {"password": CANARY.encode(), "user": b"admin", "blob": b"\xff\x00bin"}
    assert CANARY not in repr(db) and CANARY not in str(out)  # redacting repr
    # Non-secret objects pass through untouched.
    assert [o for o in out if o["kind"] != "Secret"] == [
        o for o in objects if o["kind"] != "Secret"
    ]
    assert res.cache_stats().misses == 1
    again = res.resolve(objects)
    assert decoded(secret(again, "db")) == decoded(db)
    assert res.cache_stats().hits == 1 and res.cache_stats().misses == 1


def test_set_on_existing_file_keeps_other_keys_and_sorted_order(secrets_repo: Path) -> None:
    project = _project(secrets_repo)
    identity = init_age(project, "dev")
    set_values(project, "dev", "api", zeta="z", alpha="a")
    set_values(project, "dev", "api", middle="m", alpha="A2")
    doc = files.load_document(secrets_repo / "overlays/dev/secrets/api.sops.yaml")
    assert list(doc["stringData"]) == ["alpha", "middle", "zeta"]  # as kustomize orders them
    out = resolver(project, "dev", SOPS_AGE_KEY_FILE=str(identity)).resolve(
        rendered(project, "dev")
    )
    assert decoded(secret(out, "api")) == {"alpha": b"A2", "middle": b"m", "zeta": b"z"}
    kz = (secrets_repo / "overlays/dev/kustomization.yaml").read_text()
    assert kz.count("secrets/api.sops.yaml") == 1


@pytest.mark.usefixtures("decrypt_backend")
def test_dev_identity_cannot_decrypt_prod(secrets_repo: Path) -> None:
    project = _project(secrets_repo)
    dev_key = init_age(project, "dev")
    init_age(project, "prod")
    set_values(project, "prod", "db", password=CANARY)
    res = resolver(project, "prod", SOPS_AGE_KEY_FILE=str(dev_key))
    with pytest.raises(sops.NoKeyError) as caught:
        res.resolve(rendered(project, "prod"))
    message = str(caught.value)
    assert "Secret production/db" in message
    assert "overlays/prod/secrets/db.sops.yaml" in message
    assert "no key of this environment can decrypt it" in message
    assert CANARY not in message
    assert not caught.value.retryable


@pytest.mark.usefixtures("decrypt_backend")
def test_one_failure_fails_the_whole_resolution(secrets_repo: Path) -> None:
    project = _project(secrets_repo)
    dev_key = init_age(project, "dev")
    init_age(project, "prod")
    set_values(project, "dev", "ok", value="fine")
    set_values(project, "prod", "db", password=CANARY)
    objects = [*rendered(project, "dev"), secret(rendered(project, "prod"), "db")]
    res = resolver(project, "dev", SOPS_AGE_KEY_FILE=str(dev_key))
    with pytest.raises(errors.SopsError):
        res.resolve(objects)
    # Nothing of the failed call was kept either: the good Secret is decrypted again later.
    assert res.cache_stats().size == 0


def _tampered(obj: dict[str, Any], key: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(obj))
    value = copy["stringData"][key]
    data = re.search(r"data:([^,]+)", value)
    assert data
    flipped = ("A" if data.group(1)[0] != "A" else "B") + data.group(1)[1:]
    copy["stringData"][key] = value.replace(data.group(1), flipped, 1)
    return copy


@pytest.mark.usefixtures("decrypt_backend")
def test_tampered_ciphertext_and_mac_are_rejected(secrets_repo: Path) -> None:
    project = _project(secrets_repo)
    identity = init_age(project, "dev")
    set_values(project, "dev", "db", password=CANARY, user="admin")
    db = secret(rendered(project, "dev"), "db")
    res = resolver(project, "dev", SOPS_AGE_KEY_FILE=str(identity))
    with pytest.raises(errors.SopsError, match="a value was altered or is not encrypted"):
        res.resolve([_tampered(db, "password")])
    dropped = json.loads(json.dumps(db))
    del dropped["stringData"]["user"]
    with pytest.raises(errors.SopsError, match="MAC mismatch: the file was altered"):
        res.resolve([dropped])


@pytest.mark.usefixtures("decrypt_backend")
def test_plaintext_value_echoed_by_sops_never_reaches_message_or_log(
    secrets_repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project = _project(secrets_repo)
    identity = init_age(project, "dev")
    set_values(project, "dev", "db", password="x", user="admin")
    db = secret(rendered(project, "dev"), "db")
    db["stringData"]["password"] = CANARY  # sops quotes such a value back on stderr
    caplog.set_level(logging.DEBUG)
    res = resolver(project, "dev", SOPS_AGE_KEY_FILE=str(identity))
    with pytest.raises(errors.SopsError) as caught:
        res.resolve([db])
    assert "not encrypted" in str(caught.value)
    assert CANARY not in str(caught.value) + repr(caught.value) + caplog.text
    assert caught.value.__cause__ is None


def test_a_non_secret_with_sops_metadata_is_refused(secrets_repo: Path) -> None:
    project = _project(secrets_repo)
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "sops": {}}
    with pytest.raises(errors.SopsError, match="only Secrets may hold SOPS-encrypted values"):
        resolver(project, "dev").resolve([obj])


def test_transit_key_on_another_vault_is_refused_before_sops_runs(secrets_repo: Path) -> None:
    project = _project(secrets_repo)
    obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "dev"},
        "stringData": {"password": "ENC[AES256_GCM,data:Zm9v,iv:aXY=,tag:dGFn,type:str]"},
        "sops": {
            "hc_vault": [
                {
                    "vault_address": "https://attacker.example:8200",
                    "engine_path": "transit",
                    "key_name": "dev",
                }
            ],
            "mac_only_encrypted": True,
        },
    }
    # Not even with a token in the environment: sops would send it to the file's address.
    res = resolver(project, "dev", VAULT_ADDR="http://127.0.0.1:8200", VAULT_TOKEN="t")
    with pytest.raises(errors.SopsError) as caught:
        res.resolve([obj])
    assert "https://attacker.example:8200" in str(caught.value)
    assert "refusing to send the agent's token there" in str(caught.value)


# --- PGP -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("decrypt_backend")
def test_pgp_round_trip(
    secrets_repo: Path, gpg_keyring: GpgKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    fpr = gpg_keyring.new_key("prod-agent")
    monkeypatch.setenv("GNUPGHOME", str(gpg_keyring.home))
    project = _project(secrets_repo)
    public = secrets_repo.parent / "prod-agent.asc"
    public.write_text(gpg_keyring.export_public(fpr))
    assert keys.add_recipient(project, "prod", str(public), environ=os.environ) == f"PGP {fpr}"
    assert (secrets_repo / f"keys/prod/{fpr}.asc").exists()
    rekey.sync(project, environ=os.environ, envs=["prod"])
    assert f"pgp: {fpr}" in (secrets_repo / ".sops.yaml").read_text()
    set_values(project, "prod", "db", password=CANARY)
    doc = files.load_document(secrets_repo / "overlays/prod/secrets/db.sops.yaml")
    assert [p["fp"] for p in doc["sops"]["pgp"]] == [fpr]
    objects = rendered(project, "prod")
    out = resolver(project, "prod", GNUPGHOME=str(gpg_keyring.home)).resolve(objects)
    assert decoded(secret(out, "db")) == {"password": CANARY.encode()}
    empty = secrets_repo.parent / "empty-gnupg"
    empty.mkdir(mode=0o700)
    with pytest.raises(sops.NoKeyError, match="no key of this environment can decrypt"):
        resolver(project, "prod", GNUPGHOME=str(empty)).resolve(objects)


def test_keys_folder_refuses_a_private_pgp_block(
    secrets_repo: Path, gpg_keyring: GpgKeyring
) -> None:
    project = _project(secrets_repo)
    # A real private key, generated now in the test's temporary keyring and exported into the
    # temporary repository: what a user pasting the wrong export would commit.
    fpr = gpg_keyring.new_key("leaky")
    (secrets_repo / "keys/dev/leak.asc").write_text(gpg_keyring.export_private(fpr))
    with pytest.raises(errors.GpgError, match="PRIVATE key block"):
        keys.read_keys(project, "dev", environ=os.environ)


# --- keys init, .sops.yaml -------------------------------------------------------------------


def test_keys_init_refuses_a_path_inside_the_working_tree_and_overwrites(
    secrets_repo: Path,
) -> None:
    project = _project(secrets_repo)
    with pytest.raises(errors.UsageError, match="inside the repository's working tree"):
        keys.create_age_identity(
            project, "dev", out=secrets_repo / "keys/dev/dev.agekey", environ=os.environ
        )
    link = secrets_repo.parent / "looks-outside"
    link.symlink_to(secrets_repo / "keys")
    for inside in (secrets_repo / "x" / ".." / "dev.agekey", link / "dev.agekey"):
        with pytest.raises(errors.UsageError, match="inside the repository's working tree"):
            keys.create_age_identity(project, "dev", out=inside, environ=os.environ)
    path, recipient = keys.create_age_identity(project, "dev", out=None, environ=os.environ)
    assert path.name == "dev.agekey" and path.parent.name == "repo"
    assert (secrets_repo / "keys/dev/age.txt").read_text().strip().endswith(recipient)
    body = path.read_text()
    assert "AGE-SECRET-KEY-" in body and f"# public key: {recipient}" in body
    assert str(x25519.Identity.from_str(body.strip().splitlines()[-1]).to_public()) == recipient
    with pytest.raises(errors.UsageError, match="never overwrites a private key"):
        keys.create_age_identity(project, "dev", out=path, environ=os.environ)


def test_sops_config_has_one_rule_per_environment(secrets_repo: Path) -> None:
    project = _project(secrets_repo)
    init_age(project, "dev")
    init_age(project, "prod")
    text = (secrets_repo / ".sops.yaml").read_text()
    assert text.startswith("# GENERATED by `promote keys sync`")
    assert text.count("path_regex:") == 2  # staging has no key yet: no rule
    assert r"path_regex: overlays/dev/.*\.sops\.yaml$" in text
    assert "encrypted_regex: ^(data|stringData)$" in text
    assert text.count("mac_only_encrypted: true") == 2
    with pytest.raises(errors.KeyFileError, match="keys/staging/ lists no recipient"):
        set_values(project, "staging", "db", password="x")


# --- validate ----------------------------------------------------------------------------------


def _findings(project: config.Project, env: str) -> list[str]:
    objects = render.render(project.env(env).overlay_dir)
    return [str(f) for f in checks.check_environment(project, project.env(env), objects)]


def test_validate_checks_files_recipients_order_and_keys_folder(secrets_repo: Path) -> None:
    project = _project(secrets_repo)
    init_age(project, "dev")
    set_values(project, "dev", "db", password=CANARY)
    assert _findings(project, "dev") == []
    # A plaintext *.sops.yaml that no kustomization lists is still a committed plaintext.
    (secrets_repo / "overlays/dev/secrets/loose.sops.yaml").write_text(
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: loose\nstringData:\n  k: {CANARY}\n"
    )
    # A recipient added to keys/dev without re-wrapping the file.
    other = str(x25519.Identity.generate().to_public())
    keys.add_recipient(project, "dev", other, environ=os.environ)
    (secrets_repo / "keys/dev/old.key").write_text(str(x25519.Identity.generate()) + "\n")
    found = _findings(project, "dev")
    text = "\n".join(found)
    assert "overlays/dev/secrets/loose.sops.yaml" in text and "not encrypted" in text
    assert f"not encrypted to {other} of keys/dev/" in text and "promote keys sync" in text
    assert "keys/dev/old.key" in text and "PRIVATE key material" in text
    assert CANARY not in text


def test_validate_flags_one_plaintext_value_in_an_encrypted_file(secrets_repo: Path) -> None:
    project = _project(secrets_repo)
    init_age(project, "dev")
    set_values(project, "dev", "db", password="x", user="admin")
    path = secrets_repo / "overlays/dev/secrets/db.sops.yaml"
    path.write_text(re.sub(r"user: ENC\[[^\]]*\]", f"user: {CANARY}", path.read_text()))
    validate.EXTRA_CHECKS.append(checks.check_environment)
    try:
        report = validate.validate_project(project, ["dev"])
    finally:
        validate.EXTRA_CHECKS.remove(checks.check_environment)
    problems = report.problems()
    assert any("stringData.user" in p and "not encrypted" in p for p in problems), problems
    assert len([p for p in problems if "stringData.user" in p]) == 1  # reported once
    assert CANARY not in "\n".join(problems)


def test_validate_flags_unsorted_keys_that_would_break_the_mac(secrets_repo: Path) -> None:
    project = _project(secrets_repo)
    identity = init_age(project, "dev")
    adapter = sops.Sops(env=sops.sops_env({**os.environ, "SOPS_AGE_KEY_FILE": str(identity)}))
    plain = (
        b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: raw\nstringData:\n  z: '1'\n  a: '2'\n"
    )
    target = secrets_repo / "overlays/dev/secrets/raw.sops.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(
        adapter.encrypt(
            values.Plaintext(plain),
            filename=target,
            config=secrets_repo / ".sops.yaml",
            cwd=secrets_repo,
        )
    )
    found = "\n".join(_findings(project, "dev"))
    assert "keys are not sorted" in found and "raw" in found


# --- pure pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "stderr", "reason", "retryable"),
    [
        (128, "identity did not match any of the recipients", "no age identity given", False),
        (128, "gpg: decryption failed: No secret key", "no matching private key", False),
        (128, "dial tcp 127.0.0.1:1: connect: connection refused", "unreachable", True),
        (128, "Code: 403. Errors: * permission denied", "Vault refused the token", False),
        (51, "MAC mismatch. File has AB, computed CD", "MAC mismatch", False),
        (25, f"Input string {CANARY} does not match sops' data format", "altered or is not", False),
        (1, "error loading config: no matching creation rules found", "no creation rule", False),
        (1, "sops metadata not found", "not a sops file", False),
        (7, f"weird {CANARY}", "sops exited with status 7", False),
    ],
)
def test_describe_failure_maps_exit_codes_to_our_words(
    code: int, stderr: str, reason: str, retryable: bool
) -> None:
    failure = sops.describe_failure(code, stderr.encode())
    assert reason in failure.reason
    assert failure.retryable is retryable
    assert CANARY not in failure.reason


def test_parse_assignments_reads_stdin_files_and_never_echoes_values(tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\x01\n")
    parsed = store.parse_assignments(
        ["a=plain", f"b=@{blob}", "c=-", "d="],
        read_stdin=lambda: CANARY.encode() + b"\n",
        read_file=Path.read_bytes,
    )
    assert [(p.key, p.value) for p in parsed] == [
        ("a", b"plain"),
        ("b", b"\x00\x01\n"),
        ("c", CANARY.encode()),
        ("d", b""),
    ]
    assert CANARY not in repr(parsed)
    for bad in ([f"no-equals-{CANARY}"], [f"bad key={CANARY}"], ["a=1", "a=2"], ["x=-", "y=-"]):
        with pytest.raises(errors.UsageError) as caught:
            store.parse_assignments(bad, read_stdin=lambda: b"v", read_file=Path.read_bytes)
        assert CANARY not in str(caught.value)


def test_plaintext_repr_is_redacted() -> None:
    plain = values.Plaintext(CANARY.encode())
    assert CANARY not in repr(plain) and CANARY not in str(plain) and f"{plain}" != CANARY
    assert plain.reveal() == CANARY.encode()


def test_validate_flags_a_release_managers_private_key(
    secrets_repo: Path, gpg_keyring: GpgKeyring
) -> None:
    project = _project(secrets_repo)
    approvers = project.env("staging").config.approvals.approvers
    assert approvers, "the example's staging lists approvers"
    fpr = gpg_keyring.new_key(approvers[0])
    path = secrets_repo / f"keys/release-managers/{approvers[0]}.asc"
    path.write_text(gpg_keyring.export_public(fpr))
    assert _findings(project, "staging") == []
    path.write_text(gpg_keyring.export_private(fpr))
    found = "\n".join(_findings(project, "staging"))
    assert f"keys/release-managers/{approvers[0]}.asc" in found and "PRIVATE key material" in found
    assert "BEGIN PGP" not in found
