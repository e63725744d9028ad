"""`vault:` references and Vault transit keys against a real OpenBao dev server."""

from __future__ import annotations

import base64
import os
import time
import uuid
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

from promote import config, errors
from promote.kustomize import render
from promote.secrets import files, resolve, values, vault
from promote.secrets.authoring import keys, rekey, store
from tests.conftest import OpenBao

pytestmark = pytest.mark.integration

CANARY = "CANARY-vault-e8c2d0"
READ_POLICY = 'path "secret/data/*" { capabilities = ["read"] }'


@pytest.fixture
def root(openbao: OpenBao) -> hvac.Client:
    return hvac.Client(url=openbao.address, token=openbao.token)


@pytest.fixture
def kv_path(root: hvac.Client) -> str:
    """A KV v2 path of this test's own, holding two versions of `password`."""
    path = f"promote-test/{uuid.uuid4().hex[:8]}/db"
    root.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"password": "old-value", "user": "app"}, mount_point="secret"
    )
    root.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"password": CANARY, "user": "app"}, mount_point="secret"
    )
    return path


def _configure(repo: Path, env: str, vault_yaml: str) -> config.Project:
    path = repo / f"environments/{env}.yaml"
    path.write_text(path.read_text() + f"secrets:\n  vault: {vault_yaml}\n")
    return config.load_project(repo)


def _vault_secret(repo: Path, env: str, **values: str) -> None:
    """A plain Secret whose values are `vault:` references (allowed in Git as they are)."""
    string_data = {k: v for k, v in values.items() if k != "encoded"}
    body = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\nstringData:\n"
    body += "".join(f"  {k}: {v}\n" for k, v in string_data.items())
    if "encoded" in values:
        body += f"data:\n  encoded: {base64.b64encode(values['encoded'].encode()).decode()}\n"
    (repo / f"overlays/{env}/api-secret.yaml").write_text(body)
    kz = repo / f"overlays/{env}/kustomization.yaml"
    kz.write_text(
        kz.read_text().replace("- ../base/api\n", "- ../base/api\n- api-secret.yaml\n", 1)
    )


def _resolve(project: config.Project, env: str, **environ: str) -> list[dict[str, Any]]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]}
    res = resolve.Resolver.for_environment(
        project.env(env),
        environ={**base, **environ},
        sources=lambda: files.sources(project, project.env(env)),
    )
    return res.resolve(render.render(project.env(env).overlay_dir))


def _api(objects: list[dict[str, Any]]) -> dict[str, bytes]:
    obj = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "api")
    assert "stringData" not in obj
    return {k: base64.b64decode(v) for k, v in obj["data"].items()}


def test_vault_references_resolve_with_token_auth(
    secrets_repo: Path, openbao: OpenBao, kv_path: str
) -> None:
    project = _configure(secrets_repo, "dev", f"{{address: {openbao.address}, auth: token}}")
    _vault_secret(
        secrets_repo,
        "dev",
        password=f"vault:secret/{kv_path}#password",
        first=f"vault:secret/{kv_path}#password@1",
        encoded=f"vault:secret/{kv_path}#user",
    )
    out = _resolve(project, "dev", VAULT_TOKEN=openbao.token)
    assert _api(out) == {"password": CANARY.encode(), "first": b"old-value", "encoded": b"app"}
    assert CANARY not in str(out)


def test_missing_vault_path_is_a_named_error(
    secrets_repo: Path, openbao: OpenBao, kv_path: str
) -> None:
    project = _configure(secrets_repo, "dev", f"{{address: {openbao.address}}}")
    _vault_secret(secrets_repo, "dev", password="vault:secret/promote-test/nope/db#password")
    with pytest.raises(errors.VaultError) as caught:
        _resolve(project, "dev", VAULT_TOKEN=openbao.token)
    message = str(caught.value)
    assert "Secret dev/api key 'password'" in message
    assert "secret/promote-test/nope/db does not exist" in message
    assert not caught.value.retryable
    _vault_secret(secrets_repo, "staging", password=f"vault:secret/{kv_path}#missing")
    project = _configure(secrets_repo, "staging", f"{{address: {openbao.address}}}")
    with pytest.raises(errors.VaultError, match="has no key 'missing' \\(it has: password, user"):
        _resolve(project, "staging", VAULT_TOKEN=openbao.token)


def test_stopped_vault_is_unavailable_and_retryable(
    secrets_repo: Path, stopped_openbao: str
) -> None:
    project = _configure(secrets_repo, "dev", f"{{address: {stopped_openbao}}}")
    _vault_secret(secrets_repo, "dev", password="vault:secret/app/db#password")
    with pytest.raises(errors.VaultUnavailable) as caught:
        _resolve(project, "dev", VAULT_TOKEN="whatever")
    assert caught.value.retryable
    assert "Vault is unreachable" in str(caught.value) and "Secret dev/api" in str(caught.value)


def test_expired_token_is_a_named_error(
    secrets_repo: Path, openbao: OpenBao, root: hvac.Client, kv_path: str
) -> None:
    root.sys.create_or_update_policy(name="promote-read", policy=READ_POLICY)
    token = root.auth.token.create(policies=["promote-read"], ttl="2s")["auth"]["client_token"]
    project = _configure(secrets_repo, "dev", f"{{address: {openbao.address}}}")
    _vault_secret(secrets_repo, "dev", password=f"vault:secret/{kv_path}#password")
    assert _api(_resolve(project, "dev", VAULT_TOKEN=token))["password"] == CANARY.encode()
    time.sleep(3)
    with pytest.raises(errors.VaultError, match="Vault refused the token \\(expired"):
        _resolve(project, "dev", VAULT_TOKEN=token)


def test_approle_auth(
    secrets_repo: Path, openbao: OpenBao, root: hvac.Client, kv_path: str
) -> None:
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle")
    root.sys.create_or_update_policy(name="promote-read", policy=READ_POLICY)
    role = f"promote-{uuid.uuid4().hex[:6]}"
    root.auth.approle.create_or_update_approle(role, token_policies=["promote-read"])
    role_id = root.auth.approle.read_role_id(role)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(role)["data"]["secret_id"]
    project = _configure(
        secrets_repo, "dev", f"{{address: {openbao.address}, auth: approle, role: {role_id}}}"
    )
    _vault_secret(secrets_repo, "dev", password=f"vault:secret/{kv_path}#password")
    out = _resolve(project, "dev", VAULT_SECRET_ID=secret_id)
    assert _api(out)["password"] == CANARY.encode()
    with pytest.raises(errors.VaultError, match="Vault refused the login"):
        _resolve(project, "dev", VAULT_SECRET_ID="not-the-secret-id")


def test_reference_without_a_vault_is_a_config_error(secrets_repo: Path) -> None:
    project = config.load_project(secrets_repo)
    _vault_secret(secrets_repo, "dev", password="vault:secret/app/db#password")
    with pytest.raises(errors.ConfigError, match=r"dev has no Vault; set secrets\.vault"):
        _resolve(project, "dev")


@pytest.mark.usefixtures("decrypt_backend")
def test_vault_transit_round_trip(
    secrets_repo: Path, openbao: OpenBao, root: hvac.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "transit/" not in root.sys.list_mounted_secrets_engines()["data"]:
        root.sys.enable_secrets_engine("transit", path="transit")
    name = f"dev-{uuid.uuid4().hex[:6]}"
    root.secrets.transit.create_key(name=name)
    project = _configure(secrets_repo, "dev", f"{{address: {openbao.address}}}")
    uri = f"{openbao.address}/v1/transit/keys/{name}"
    assert keys.add_recipient(project, "dev", uri, environ=os.environ) == f"vault {uri}"
    rekey.sync(project, environ=os.environ)
    assert f"hc_vault_transit_uri: {uri}" in (secrets_repo / ".sops.yaml").read_text()
    monkeypatch.setenv("VAULT_TOKEN", openbao.token)
    store.set_secret(
        project, "dev", "db", [store.Assignment("password", CANARY.encode())], environ=os.environ
    )
    doc = files.load_document(secrets_repo / "overlays/dev/secrets/db.sops.yaml")
    assert doc["sops"]["hc_vault"][0]["key_name"] == name
    out = _resolve(project, "dev", VAULT_TOKEN=openbao.token)
    db = next(o for o in out if o["kind"] == "Secret" and o["metadata"]["name"] == "db")
    assert base64.b64decode(db["data"]["password"]) == CANARY.encode()
    with pytest.raises(errors.SopsError) as caught:
        _resolve(project, "dev", VAULT_TOKEN="s.not-a-token")
    assert "Vault refused the token" in str(caught.value)
    assert "overlays/dev/secrets/db.sops.yaml" in str(caught.value)


def test_transit_uri_on_another_vault_than_configured_is_refused(
    secrets_repo: Path, openbao: OpenBao
) -> None:
    project = _configure(secrets_repo, "dev", f"{{address: {openbao.address}}}")
    with pytest.raises(errors.UsageError, match="the agent only unwraps data keys"):
        keys.add_recipient(
            project, "dev", "https://elsewhere.example:8200/v1/transit/keys/dev", environ={}
        )


def test_secret_text_repr_is_redacted() -> None:
    text = values.SecretText(CANARY)
    assert text == CANARY and CANARY not in repr(text) and CANARY not in repr({"k": text})
    assert vault.parse_ref("vault:secret/a/b#k@3") == vault.KvRef("secret", "a/b", "k", 3)
    assert vault.parse_ref("not a ref") is None
