"""Configuration errors name the file, the line, the field and the fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from promote import config
from promote.errors import ConfigError
from tests.helpers import copy_example


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo")


def _write(repo: Path, rel: str, text: str) -> None:
    (repo / rel).write_text(text)


def _error(repo: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        config.load_project(repo)
    return str(exc.value)


def test_example_loads_in_pipeline_order(repo: Path) -> None:
    project = config.load_project(repo)
    assert project.pipeline() == ["dev", "staging", "prod"]
    prod = project.env("prod").config
    assert prod.approvals.required == 2
    assert prod.sync.interval == timedelta(seconds=60)
    assert prod.cluster.namespace == "production"


def test_unknown_key_names_file_line_and_allowed_fields(repo: Path) -> None:
    _write(
        repo,
        "environments/prod.yaml",
        "upstream: staging\nsync:\n  interval: 60s\n  selfHeel: true\n",
    )
    msg = _error(repo)
    assert "environments/prod.yaml:4" in msg
    assert "sync.selfHeel" in msg
    assert "selfHeal" in msg  # the fix: the allowed spelling


def test_wrong_type_names_field(repo: Path) -> None:
    _write(
        repo,
        "environments/prod.yaml",
        "upstream: staging\napprovals:\n  required: many\n  approvers: [a]\n",
    )
    msg = _error(repo)
    assert "environments/prod.yaml:3" in msg and "approvals.required" in msg


def test_upstream_naming_no_environment(repo: Path) -> None:
    _write(repo, "environments/prod.yaml", "upstream: stagin\n")
    msg = _error(repo)
    assert "environments/prod.yaml:1" in msg and "upstream" in msg and "'stagin'" in msg
    assert "staging" in msg


def test_cycle_in_upstreams(repo: Path) -> None:
    _write(repo, "environments/dev.yaml", "upstream: prod\n")
    msg = _error(repo)
    assert "cycle" in msg and "upstream" in msg
    assert "dev -> " in msg or "prod -> " in msg or "staging -> " in msg


def test_missing_overlay_folder(repo: Path) -> None:
    _write(repo, "environments/prod.yaml", "upstream: staging\noverlay: overlays/production\n")
    msg = _error(repo)
    assert "environments/prod.yaml" in msg and "overlay" in msg
    assert "overlays/production/ does not exist" in msg


@pytest.mark.parametrize("bad", ["60", "5 minutes", "1x", "m5", ""])
def test_bad_duration(repo: Path, bad: str) -> None:
    _write(repo, "environments/dev.yaml", f"sync:\n  interval: '{bad}'\n")
    msg = _error(repo)
    assert "environments/dev.yaml:2" in msg and "sync.interval" in msg
    assert "30s, 5m, 1h" in msg


@pytest.mark.parametrize(
    ("text", "seconds"), [("60s", 60), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("500ms", 0.5)]
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert config.parse_duration(text).total_seconds() == seconds


def test_required_larger_than_approvers(repo: Path) -> None:
    _write(
        repo,
        "environments/prod.yaml",
        "upstream: staging\napprovals:\n  required: 3\n  approvers: [rm1, rm2]\n",
    )
    msg = _error(repo)
    assert msg.startswith("environments/prod.yaml:3: approvals.required is 3 but only 2")
    assert "add approvers or lower it" in msg


def test_invalid_yaml_names_line(repo: Path) -> None:
    _write(repo, "environments/prod.yaml", "upstream: staging\ncluster: [\n")
    msg = _error(repo)
    assert "environments/prod.yaml:" in msg and "not valid YAML" in msg


def test_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="promote init"):
        config.load_project(tmp_path)


def test_unknown_environment_is_usage_error(repo: Path) -> None:
    from promote.errors import UsageError

    project = config.load_project(repo)
    with pytest.raises(UsageError, match="dev, staging, prod"):
        project.env("qa")


def test_project_file_unknown_forge_type(repo: Path) -> None:
    _write(repo, "promote.yaml", "forge:\n  type: gitlab\n")
    msg = _error(repo)
    assert "promote.yaml:2" in msg and "forge.type" in msg and "'local', 'gitea'" in msg
