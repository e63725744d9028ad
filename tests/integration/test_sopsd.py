"""The persistent decryptor (sopsd) against the sops binary: same plaintext, same messages.

Real files encrypted by the real sops binary to real age identities; sopsd built from
tools/sopsd by tools/ensure-sopsd.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from promote import config, errors
from promote.secrets import resolve, sops, sopsd
from tests.integration.test_secrets_sops import _tampered, init_age, rendered, secret, set_values

CANARY = "CANARY-sopsd-5c19e2"


def _adapters(identity: Path, sopsd_binary: Path) -> tuple[sops.Sops, sops.Sops]:
    env = sops.sops_env({"PATH": os.environ["PATH"], "SOPS_AGE_KEY_FILE": str(identity)})
    return sops.Sops(env=env, sopsd_binary=sopsd_binary), sops.Sops(env=env, sopsd_binary=None)


def _outcome(adapter: sops.Sops, obj: dict[str, Any] | bytes) -> tuple[str, str]:
    document = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    try:
        plain = adapter.decrypt(document, what="Secret dev/db")
    except errors.PromoteError as exc:
        return type(exc).__name__, f"{exc.message} | {exc.hint}"
    return "ok", plain.reveal().decode()


@pytest.fixture
def db(secrets_repo: Path) -> tuple[dict[str, Any], Path]:
    project = config.load_project(secrets_repo)
    identity = init_age(project, "dev")
    set_values(project, "dev", "db", password=CANARY, user="admin")
    return secret(rendered(project, "dev"), "db"), identity


def _cases(obj: dict[str, Any], project: config.Project) -> dict[str, dict[str, Any] | bytes]:
    dropped = json.loads(json.dumps(obj))
    del dropped["stringData"]["user"]
    no_mac = json.loads(json.dumps(obj))
    no_mac["sops"]["mac"] = ""
    plain_value = json.loads(json.dumps(obj))
    plain_value["stringData"]["password"] = CANARY
    init_age(project, "prod")
    set_values(project, "prod", "other", password=CANARY)
    return {
        "decrypts": obj,
        "tampered value": _tampered(obj, "password"),
        "MAC mismatch": dropped,
        "no MAC": no_mac,
        "not encrypted": plain_value,
        "wrong key": secret(rendered(project, "prod"), "other"),
        "not a sops document": f"kind: Secret\nstringData:\n  password: {CANARY}\n".encode(),
        "not YAML": f"{{{{[ {CANARY}".encode(),
    }


def test_sopsd_gives_the_same_plaintext_and_messages_as_the_sops_binary(
    db: tuple[dict[str, Any], Path], secrets_repo: Path, sopsd_binary: Path
) -> None:
    obj, identity = db
    persistent, per_process = _adapters(identity, sopsd_binary)
    cases = _cases(obj, config.load_project(secrets_repo))
    try:
        for name, case in cases.items():
            got, want = _outcome(persistent, case), _outcome(per_process, case)
            assert got == want, name
            if name != "decrypts":
                assert got[0] != "ok" and CANARY not in got[1], name
        assert json.loads(_outcome(persistent, obj)[1])["stringData"]["password"] == CANARY
        assert persistent.decryptor is not None and persistent.decryptor.starts == 1
    finally:
        persistent.close()


def test_sopsd_writes_no_value_to_stderr_or_into_an_answer(
    db: tuple[dict[str, Any], Path], secrets_repo: Path, sopsd_binary: Path
) -> None:
    obj, identity = db
    cases = _cases(obj, config.load_project(secrets_repo))
    del cases["decrypts"]
    stream = b"".join(
        f"yaml json {len(doc)}\n".encode() + doc
        for doc in (c if isinstance(c, bytes) else json.dumps(c).encode() for c in cases.values())
    )
    env = sops.sops_env({"PATH": os.environ["PATH"], "SOPS_AGE_KEY_FILE": str(identity)})
    run = subprocess.run(
        [str(sopsd_binary)], input=stream, capture_output=True, env=env, check=False, timeout=60
    )
    assert run.returncode == 0 and run.stderr == b""
    answers = run.stdout.decode().splitlines()
    assert answers == [
        "err 25 -",  # tampered value
        "err 51 -",  # MAC mismatch
        "err 51 -",  # an empty MAC (sops compares it, as the binary does)
        "err 25 -",  # not encrypted (sops would quote the value in its error text)
        "err 128 age-no-identity",  # wrong key
        "err 1 no-metadata",  # not a sops document
        "err 1 -",  # not YAML
    ]
    # A malformed request ends it with a message of its own, naming nothing it was sent.
    bad = subprocess.run(
        [str(sopsd_binary)], input=f"yaml json x{CANARY}\n".encode(), capture_output=True,
        env=env, check=False, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and CANARY.encode() not in bad.stderr + bad.stdout


def test_a_killed_decryptor_is_started_again(
    db: tuple[dict[str, Any], Path], sopsd_binary: Path
) -> None:
    obj, identity = db
    adapter, _ = _adapters(identity, sopsd_binary)
    document = json.dumps(obj).encode()
    try:
        adapter.decrypt(document, what="Secret dev/db")
        decryptor = adapter.decryptor
        assert decryptor is not None and decryptor.pid is not None
        first = decryptor.pid
        os.kill(first, signal.SIGKILL)
        os.waitpid(first, 0)  # gone for certain before the next request
        plain = adapter.decrypt(document, what="Secret dev/db")
        assert CANARY in plain.reveal().decode()
        assert decryptor.starts == 2 and decryptor.pid not in (None, first)
        # Another key environment gets a process of its own; closing stops it.
        other = adapter.with_env(SOPS_AGE_KEY_FILE=str(identity))
        other.decrypt(document, what="Secret dev/db")
        assert other.decryptor is not None and other.decryptor.pid not in (None, decryptor.pid)
        other_pid = other.decryptor.pid
        other.close()
        assert other.decryptor.pid is None and not Path(f"/proc/{other_pid}").exists()
    finally:
        adapter.close()


def test_promote_sopsd_off_or_unusable(tmp_path: Path) -> None:
    assert sopsd.find_sopsd({"PROMOTE_SOPSD": "off"}) is None
    with pytest.raises(errors.SopsError, match="PROMOTE_SOPSD names no program to run"):
        sopsd.find_sopsd({"PROMOTE_SOPSD": str(tmp_path / "missing")})
    assert sopsd.find_sopsd({"PROMOTE_CACHE": str(tmp_path)}) is None


def test_resolver_close_stops_its_decryptor(
    db: tuple[dict[str, Any], Path], sopsd_binary: Path
) -> None:
    obj, identity = db
    adapter, _ = _adapters(identity, sopsd_binary)
    res = resolve.Resolver(env_name="dev", sops_adapter=adapter, workers=4)
    copies = []
    for i in range(8):  # from the resolver's thread pool, through one process
        copy = json.loads(json.dumps(obj))
        copy["metadata"]["labels"] = {"copy": str(i)}  # another cache key, same ciphertext
        copies.append(copy)
    out = res.resolve(copies)
    assert all(o["data"]["password"] for o in out)
    decryptor = adapter.decryptor
    assert decryptor is not None and decryptor.starts == 1
    pid = decryptor.pid
    res.close()
    assert decryptor.pid is None and not Path(f"/proc/{pid}").exists()
