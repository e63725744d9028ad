"""`promote init`, `envs`, `validate` as a new user runs them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.helpers import copy_example, run_cli

pytestmark = pytest.mark.e2e


def test_help_lists_commands_and_exit_codes() -> None:
    res = run_cli("--help")
    assert res.code == 0
    for word in ("init", "envs", "validate", "Exit codes"):
        assert word in res.stdout


def test_init_scaffolds_a_repository_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "gitops"
    res = run_cli("init", str(target), "--envs", "dev,qa,prod")
    assert res.code == 0, res.stderr
    assert (target / ".git").is_dir()
    assert (target / "environments/qa.yaml").read_text().count("upstream: dev") == 1
    assert run_cli("validate", cwd=target).code == 0
    envs = run_cli("envs", "-o", "json", cwd=target).json()
    assert envs["pipeline"] == ["dev", "qa", "prod"]


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    res = run_cli("init", str(tmp_path), "-o", "json")
    assert res.code == 2
    assert "not empty" in res.json()["errors"][0]["message"]


def test_envs_json_shows_pipeline_and_policies(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    data = run_cli("envs", "-o", "json", cwd=repo).json()
    assert data["pipeline"] == ["dev", "staging", "prod"]
    prod = data["environments"][2]
    assert prod["approvals"] == {
        "required": 2,
        "approvers": ["rm1", "rm2"],
        "allowSelfApproval": False,
    }
    assert prod["cluster"]["namespace"] == "production"
    text = run_cli("envs", cwd=repo)
    assert "dev -> staging -> prod" in text.stdout


def test_validate_passes_on_the_example(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    res = run_cli("validate", "-o", "json", cwd=repo)
    assert res.code == 0, res.stdout + res.stderr
    assert [e["name"] for e in res.json()["environments"]] == ["dev", "staging", "prod"]


def test_validate_blocks_plaintext_secret_without_printing_it(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    canary = "CANARY-8f1d2a-plaintext"
    (repo / "overlays/prod/db.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n"
        f"  password: {base64.b64encode(canary.encode()).decode()}\n"
    )
    kz = repo / "overlays/prod/kustomization.yaml"
    kz.write_text(kz.read_text().replace("- ../base/api\n", "- ../base/api\n- db.yaml\n"))
    res = run_cli("validate", cwd=repo)
    assert res.code == 3
    assert "Secret production/db" in res.stderr and "data.password" in res.stderr
    assert canary not in res.stdout + res.stderr
    assert base64.b64encode(canary.encode()).decode() not in res.stdout + res.stderr
    js = run_cli("validate", "--env", "prod", "-o", "json", cwd=repo)
    assert js.code == 3 and js.json()["status"] == "error"


def test_validate_blocks_latest_image(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    kz = repo / "overlays/staging/kustomization.yaml"
    kz.write_text(kz.read_text().replace("newTag: v2.3.2", "newTag: latest"))
    res = run_cli("validate", "--env", "staging", cwd=repo)
    assert res.code == 3
    assert "Deployment staging/web-app" in res.stderr and ":latest" in res.stderr
    assert run_cli("validate", "--env", "dev", cwd=repo).code == 0


def test_validate_reports_kustomize_refusal_of_nameless_object(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    kz = repo / "overlays/staging/kustomization.yaml"
    (repo / "overlays/staging/noname.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n"
    )
    kz.write_text(kz.read_text().replace("- ../base/api\n", "- ../base/api\n- noname.yaml\n"))
    res = run_cli("validate", "--env", "staging", "-o", "json", cwd=repo)
    assert res.code == 3
    messages = " ".join(e["message"] for e in res.json()["errors"])
    assert "overlays/staging" in messages and "kustomize build failed" in messages


def test_validate_unknown_env_is_usage_error(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    res = run_cli("validate", "--env", "qa", cwd=repo)
    assert res.code == 2 and "unknown environment 'qa'" in res.stderr


def test_config_error_exit_1_with_file_and_field(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    (repo / "environments/prod.yaml").write_text("upstream: staging\nsync:\n  intervall: 5m\n")
    res = run_cli("envs", cwd=repo)
    assert res.code == 1
    assert "environments/prod.yaml:3" in res.stderr and "sync.intervall" in res.stderr


def test_validate_flags_images_entries_that_are_not_image_references(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    kz = repo / "overlays/staging/kustomization.yaml"
    kz.write_text(kz.read_text().replace("newTag: v2.3.2", 'newTag: "v1;touch x"'))
    res = run_cli("validate", "--env", "staging", cwd=repo)
    assert res.code == 3, res.stdout + res.stderr
    assert "overlays/staging/kustomization.yaml" in res.stderr and "web-app" in res.stderr
    assert "newTag: 'v1;touch x' is not a valid image tag" in res.stderr
    assert run_cli("validate", "--env", "dev", cwd=repo).code == 0


def test_envs_shows_every_gate_and_check_that_is_on(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    prod = repo / "environments" / "prod.yaml"
    text = prod.read_text()
    assert "gates:\n  soak: 10m" in text
    prod.write_text(
        text.replace(
            "gates:\n  soak: 10m", "gates:\n  soak: 5s\n  pinDigests: true\n  signedImages: true"
        )
        + "verification:\n  healthyFor: 2m\nrollback: auto\n"
    )
    doc = run_cli("envs", "-o", "json", cwd=repo).json()
    shown = doc["environments"][2]
    assert shown["gates"] == {"soak": "5s", "pinDigests": True, "signedImages": True}
    assert shown["verification"] == {
        "healthyFor": "2m", "http": False, "job": False, "rollback": "auto"
    }  # fmt: skip
    assert doc["environments"][0]["verification"] is None
    text = run_cli("envs", cwd=repo, env={"COLUMNS": "300"}).stdout  # cells on one line
    for words in ("soak 5s", "pinned digests", "signed images", "verify 2m", "rollback auto"):
        assert words in text, text
