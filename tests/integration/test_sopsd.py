"""The persistent decryptor (sopsd) against the sops binary: same plaintext, same messages.

Real files encrypted by the real sops binary to real age identities; sopsd built from
tools/sopsd by tools/ensure-sopsd.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
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


def test_a_batch_gives_each_document_its_own_answer_in_order(
    db: tuple[dict[str, Any], Path], secrets_repo: Path, sopsd_binary: Path
) -> None:
    """All requests written at once (``decrypt_many``): the same answers, in the same order,
    as one ``sops decrypt`` per document, failures among them included."""
    obj, identity = db
    persistent, per_process = _adapters(identity, sopsd_binary)
    cases = _cases(obj, config.load_project(secrets_repo))
    names = [*cases, "decrypts"] * 3  # failures between successes, more than one pipe's worth
    documents = [
        (c if isinstance(c, bytes) else json.dumps(c).encode(), f"Secret dev/{n}")
        for n, c in ((n, cases[n]) for n in names)
    ]
    try:
        got = list(persistent.decrypt_many(documents))
        want = list(per_process.decrypt_many(documents))
        assert len(got) == len(want) == len(names)
        for name, mine, theirs in zip(names, got, want, strict=True):
            if isinstance(theirs, errors.PromoteError):
                assert isinstance(mine, errors.PromoteError), name
                assert (type(mine), mine.message, mine.hint) == (
                    type(theirs),
                    theirs.message,
                    theirs.hint,
                ), name
                assert CANARY not in mine.message, name
            else:
                assert not isinstance(mine, errors.PromoteError), name
                assert mine.reveal() == theirs.reveal(), name
        assert persistent.decryptor is not None and persistent.decryptor.starts == 1
    finally:
        persistent.close()


def _read_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def test_a_batch_survives_a_decryptor_killed_in_its_middle(
    db: tuple[dict[str, Any], Path], sopsd_binary: Path
) -> None:
    obj, identity = db
    adapter, _ = _adapters(identity, sopsd_binary)
    decryptor = adapter.decryptor
    assert decryptor is not None
    documents = []
    for i in range(2000):  # ~3 MB of requests: far more than a pipe holds
        copy = json.loads(json.dumps(obj))
        copy["metadata"]["labels"] = {"copy": str(i)}
        documents.append((json.dumps(copy).encode(), f"Secret dev/db copy {i}"))
    got: list[Any] = []
    batch = threading.Thread(target=lambda: got.extend(adapter.decrypt_many(documents)))
    try:
        batch.start()
        deadline = time.monotonic() + 60
        while (decryptor.pid is None or _read_bytes(decryptor.pid) < 300_000) and batch.is_alive():
            assert time.monotonic() < deadline, "sopsd never started reading the batch"
            time.sleep(0.001)
        pid = decryptor.pid
        assert pid is not None and batch.is_alive()
        os.kill(pid, signal.SIGKILL)  # a tenth of the way into the batch
        batch.join(timeout=120)
        assert not batch.is_alive() and len(got) == 2000
        for i, plain in enumerate(got):
            assert not isinstance(plain, errors.PromoteError), i
            assert json.loads(plain.reveal())["metadata"]["labels"] == {"copy": str(i)}
        assert decryptor.starts == 2
    finally:
        batch.join(timeout=120)
        adapter.close()


def test_a_failed_batch_leaves_the_decryptor_usable(
    db: tuple[dict[str, Any], Path], secrets_repo: Path, sopsd_binary: Path
) -> None:
    """Errors kept after a batch (as a pass's report keeps its error) hold nothing of the
    decryptor: the next decrypt and close() go through."""
    obj, identity = db
    adapter, _ = _adapters(identity, sopsd_binary)
    tampered = _tampered(obj, "password")
    kept = adapter.decrypt_many([(json.dumps(tampered).encode(), "Secret dev/db")] * 3)
    assert all(isinstance(e, errors.SopsError) for e in kept)
    res = resolve.Resolver(env_name="dev", sops_adapter=adapter)
    with pytest.raises(errors.SopsError) as failed:
        res.resolve([tampered])
    after: list[Any] = []

    def again() -> None:
        after.append(adapter.decrypt(json.dumps(obj).encode(), what="Secret dev/db"))
        adapter.close()

    worker = threading.Thread(target=again)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the decryptor's lock is still held"
    assert CANARY in after[0].reveal().decode() and failed.value is not None
