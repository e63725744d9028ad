"""`promote keys ...` and `promote secrets ...` as a user runs them (real sops and age)."""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from pyrage import x25519

from promote import config, errors
from promote.kustomize import render
from promote.secrets import resolve
from tests.conftest import GpgKeyring
from tests.helpers import Result, run_cli

pytestmark = pytest.mark.e2e


def ok(res: Result) -> Result:
    assert res.code == 0, res.stdout + res.stderr
    return res


def test_keys_and_secrets_flow(secrets_repo: Path, secrets_home: Path, tmp_path: Path) -> None:
    repo = secrets_repo
    init = ok(run_cli("keys", "init", "dev", "-o", "json", cwd=repo)).json()
    identity = Path(init["identityFile"])
    assert identity == secrets_home / ".config/promote/keys/repo/dev.agekey"
    assert init["recipient"] in (repo / "keys/dev/age.txt").read_text()
    ok(run_cli("keys", "init", "prod", cwd=repo))
    assert "overlays/prod/" in (repo / ".sops.yaml").read_text()

    created = ok(
        run_cli(
            "secrets",
            "set",
            "dev",
            "db",
            "password=-",
            "user=admin",
            "-o",
            "json",
            cwd=repo,
            input="first\n",
        )
    ).json()
    assert created["created"] and created["keys"] == ["password", "user"]
    updated = ok(run_cli("secrets", "set", "dev", "db", "password=-", cwd=repo, input="second"))
    assert "updated overlays/dev/secrets/db.sops.yaml: set password" in updated.stdout

    # Listing needs no key at all: another HOME without any identity.
    nokeys = tmp_path / "nokeys"
    nokeys.mkdir()
    env = {"HOME": str(nokeys), "XDG_CONFIG_HOME": str(nokeys)}
    listing = ok(run_cli("secrets", "list", "dev", "-o", "json", cwd=repo, env=env)).json()
    assert listing["secrets"] == [
        {
            "name": "db",
            "keys": ["password", "user"],
            "encrypted": True,
            "vaultRefs": {},
            "file": "overlays/dev/secrets/db.sops.yaml",
        }
    ]
    assert "password, user" in ok(run_cli("secrets", "list", "dev", cwd=repo, env=env)).stdout

    gap = run_cli("secrets", "check", "dev", "prod", "-o", "json", cwd=repo, env=env)
    assert gap.code == 3
    assert "Secret 'db' is missing" in [e["message"] for e in gap.json()["errors"]]
    ok(run_cli("secrets", "set", "prod", "db", "password=-", "--no-pr", cwd=repo, input="p"))
    gap = run_cli("secrets", "check", "dev", "prod", cwd=repo)
    assert gap.code == 3 and "Secret 'db' has no key 'user'" in gap.stderr
    ok(run_cli("secrets", "set", "prod", "db", "user=-", "--no-pr", cwd=repo, input="u"))
    ok(run_cli("secrets", "check", "dev", "prod", cwd=repo))

    before = (repo / "overlays/dev/secrets/db.sops.yaml").read_text()
    rotated = ok(run_cli("secrets", "rotate", "dev", "-o", "json", cwd=repo)).json()
    assert rotated["files"] == [{"file": "overlays/dev/secrets/db.sops.yaml", "action": "rotated"}]
    assert (repo / "overlays/dev/secrets/db.sops.yaml").read_text() != before
    ok(run_cli("validate", cwd=repo))

    project = config.load_project(repo)
    res = resolve.Resolver.for_environment(
        project.env("dev"), environ={"PATH": os.environ["PATH"], "SOPS_AGE_KEY_FILE": str(identity)}
    )
    out = res.resolve(render.render(project.env("dev").overlay_dir))
    db = next(o for o in out if o["kind"] == "Secret")
    assert base64.b64decode(db["data"]["password"]) == b"second"
    assert base64.b64decode(db["data"]["user"]) == b"admin"

    keys_json = ok(run_cli("keys", "list", "-o", "json", cwd=repo)).json()
    assert [e["name"] for e in keys_json["environments"]] == ["dev", "staging", "prod"]
    assert keys_json["environments"][1]["age"] == []


def test_keys_sync_without_a_private_key_lists_files_and_exits_3(
    secrets_repo: Path, secrets_home: Path
) -> None:
    repo = secrets_repo
    ok(run_cli("keys", "init", "dev", cwd=repo))
    ok(run_cli("secrets", "set", "dev", "db", "password=-", cwd=repo, input="x"))
    dev_recipient = (repo / "keys/dev/age.txt").read_text().split()[-1]
    identity = secrets_home / ".config/promote/keys/repo/dev.agekey"
    shutil.move(identity, secrets_home / "elsewhere.agekey")
    newcomer = str(x25519.Identity.generate().to_public())
    res = run_cli("keys", "add", "dev", newcomer, "--no-pr", cwd=repo)
    assert res.code == 3, res.stderr
    assert "overlays/dev/secrets/db.sops.yaml: left unchanged" in res.stderr
    assert dev_recipient in res.stderr
    assert newcomer in (repo / ".sops.yaml").read_text()
    js = run_cli("keys", "sync", "--no-pr", "-o", "json", cwd=repo)
    assert js.code == 3 and js.json()["status"] == "error"
    assert any("needs the private key" in e["message"] for e in js.json()["errors"])
    # With the key back, the same sync succeeds.
    shutil.move(secrets_home / "elsewhere.agekey", identity)
    done = ok(run_cli("keys", "sync", "--no-pr", "-o", "json", cwd=repo)).json()
    assert done["files"][0]["action"] == "updated"


def test_keys_init_pgp_records_the_public_key(
    secrets_repo: Path, gpg_keyring: GpgKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    fpr = gpg_keyring.new_key("staging-agent")
    monkeypatch.setenv("GNUPGHOME", str(gpg_keyring.home))
    res = ok(
        run_cli(
            "keys",
            "init",
            "staging",
            "--type",
            "pgp",
            "--pgp-key",
            fpr,
            "-o",
            "json",
            cwd=secrets_repo,
        )
    ).json()
    assert res["recipient"] == f"PGP {fpr}" and res["identityFile"] is None
    assert "BEGIN PGP PUBLIC KEY BLOCK" in (secrets_repo / f"keys/staging/{fpr}.asc").read_text()
    ok(
        run_cli(
            "secrets", "set", "staging", "db", "password=-", "--no-pr", cwd=secrets_repo, input="pw"
        )
    )
    listing = ok(run_cli("secrets", "list", "staging", "-o", "json", cwd=secrets_repo)).json()
    assert listing["secrets"][0]["keys"] == ["password"]
    ok(run_cli("validate", "--env", "staging", cwd=secrets_repo))
    missing = run_cli("keys", "init", "staging", "--type", "pgp", cwd=secrets_repo)
    assert missing.code == 2 and "--pgp-key" in missing.stderr


def test_keys_init_refuses_out_inside_the_repository(secrets_repo: Path) -> None:
    res = run_cli("keys", "init", "dev", "--out", "keys/dev/dev.agekey", cwd=secrets_repo)
    assert res.code == 2 and "inside the repository's working tree" in res.stderr
    assert not (secrets_repo / "keys/dev/dev.agekey").exists()


def test_validate_rejects_a_plaintext_secret_file_in_an_overlay(secrets_repo: Path) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    ok(run_cli("keys", "init", "prod", cwd=secrets_repo))
    (secrets_repo / "overlays/prod/secrets").mkdir()
    (secrets_repo / "overlays/prod/secrets/db.sops.yaml").write_text(
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {canary}\n"
    )
    res = run_cli("validate", "--env", "prod", cwd=secrets_repo)
    assert res.code == 3
    assert "overlays/prod/secrets/db.sops.yaml" in res.stderr and "not encrypted" in res.stderr
    assert canary not in res.stdout + res.stderr


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        check=True,
    )


def test_canary_never_leaves_memory(
    secrets_repo: Path,
    secrets_home: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    forms = [canary.encode(), base64.b64encode(canary.encode())]
    repo = secrets_repo
    monkeypatch.setenv("PROMOTE_LOG_LEVEL", "DEBUG")
    caplog.set_level(logging.DEBUG)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "example")

    outputs: list[Result] = []

    def cli(*args: str, input: str | None = None, code: int = 0) -> Result:
        res = run_cli(*args, cwd=repo, input=input)
        outputs.append(res)
        assert res.code == code, res.stdout + res.stderr
        return res

    cli("keys", "init", "dev")
    cli("keys", "init", "prod")
    cli("secrets", "set", "dev", "db", "password=-", "user=admin", input=canary)
    cli("secrets", "set", "prod", "db", "password=-", "user=app", "--no-pr", input=canary)
    cli("secrets", "set", "dev", "db", "user=-", input="app")  # decrypt + re-encrypt in memory
    cli("secrets", "set", "prod", "api", "token=-", "--no-pr", input=canary)
    cli("validate")
    cli("validate", "-o", "json")
    for env in ("dev", "prod"):
        cli("secrets", "list", env)
        cli("secrets", "list", env, "-o", "json")
    cli("secrets", "check", "dev", "prod", "-o", "json")
    cli("secrets", "check", "prod", "dev", code=3)
    cli("secrets", "rotate", "dev")
    cli("secrets", "rotate", "prod", "--no-pr", "-o", "json")
    extra = str(x25519.Identity.generate().to_public())
    cli("keys", "add", "dev", extra, "--no-pr")
    cli("keys", "remove", "dev", extra, "--no-pr", "-o", "json")
    cli("keys", "sync", "--no-pr")
    cli("keys", "list")

    # Resolution, as the agent does it, with DEBUG logging; and its error path.
    project = config.load_project(repo)
    for env in ("dev", "prod"):
        key = secrets_home / f".config/promote/keys/repo/{env}.agekey"
        monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key))  # the agent's key, from its env
        resolver = resolve.resolver_for_agent(project, project.env(env))
        rendered = render.render(project.env(env).overlay_dir)
        out = resolver.resolve(rendered, env=env)
        resolver.resolve(rendered, env=env)  # from the cache
        db = next(o for o in out if o["kind"] == "Secret" and o["metadata"]["name"] == "db")
        assert base64.b64decode(db["data"]["password"]) == canary.encode()  # it did resolve
        logging.getLogger("test").debug("resolved %s: %s / %r", env, out, db)
    wrong = resolve.Resolver.for_environment(
        project.env("prod"),
        environ={
            "PATH": os.environ["PATH"],
            "SOPS_AGE_KEY_FILE": str(secrets_home / ".config/promote/keys/repo/dev.agekey"),
        },
    )
    with pytest.raises(errors.SopsError) as caught:
        wrong.resolve(render.render(project.env("prod").overlay_dir))
    logging.getLogger("test").debug("error: %s", caught.value)

    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "secrets")
    git_objects = _git(repo, "cat-file", "--batch-all-objects", "--batch").stdout
    assert b"secrets/db.sops.yaml" in git_objects  # the secret files are committed
    leaks = []
    for form in forms:
        if form in git_objects:
            leaks.append("git objects")
        for res in outputs:
            if form.decode() in res.stdout + res.stderr:
                leaks.append(f"output of a command: {res.stdout[:80]!r}")
        if form.decode() in caplog.text or form.decode() in str(caught.value):
            leaks.append("log or error")
        for path in tmp_path.rglob("*"):
            if path.is_file() and not path.is_symlink() and form in path.read_bytes():
                leaks.append(str(path))
    assert outputs and all(r.stderr is not None for r in outputs)
    assert any("DEBUG" in r.stderr for r in outputs)  # logging really was at DEBUG
    # Either decrypt backend logged each decryption (sopsd when built, else one sops process).
    assert re.search(r"\bsopsd? decrypt \(", caplog.text) and "from cache" in caplog.text
    assert not leaks, leaks
