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


def test_literal_field_names_allowed_values(repo: Path) -> None:
    _write(repo, "promote.yaml", "mainBranch: main\nforge:\n  type: gitlab\n")
    msg = _error(repo)
    assert msg == (
        "promote.yaml:3: forge.type: 'gitlab' is not one of 'local', 'gitea' or 'github'; "
        "use one of the allowed values."
    )


def test_wrong_type_bool(repo: Path) -> None:
    _write(repo, "environments/dev.yaml", "cluster:\n  namespace: dev\n  inCluster: maybe\n")
    msg = _error(repo)
    assert msg.startswith("environments/dev.yaml:3: cluster.inCluster: Input should be a valid")
    assert "boolean" in msg and msg.endswith("; correct the value.")


@pytest.mark.parametrize(("text", "expected"), [("yes", True), ("'off'", False), ("1", True)])
def test_bool_accepts_yaml_spellings(repo: Path, text: str, expected: bool) -> None:
    _write(repo, "environments/dev.yaml", f"sync:\n  prune: {text}\n")
    assert config.load_project(repo).env("dev").config.sync.prune is expected


def test_number_where_text_is_expected(repo: Path) -> None:
    _write(repo, "environments/dev.yaml", "cluster:\n  namespace: 5\n")
    msg = _error(repo)
    assert "environments/dev.yaml:2: cluster.namespace: Input should be a valid string" in msg


def test_missing_required_field_in_list_item(repo: Path) -> None:
    _write(
        repo,
        "environments/dev.yaml",
        "sync:\n  ignore:\n    - kind: HorizontalPodAutoscaler\n      name: web\n",
    )
    msg = _error(repo)
    assert msg == "environments/dev.yaml:3: sync.ignore[0].paths: Field required; add it."


def test_every_problem_is_reported_in_one_paragraph(repo: Path) -> None:
    _write(
        repo,
        "environments/dev.yaml",
        "secrets:\n  vault:\n    auth: ldap\n    kvMount: 3\ncolour: blue\n",
    )
    msg = _error(repo)
    assert msg.startswith("environments/dev.yaml:2: secrets.vault.address: Field required; add it.")
    assert "environments/dev.yaml:4: secrets.vault.kvMount: Input should be a valid string" in msg
    assert "secrets.vault.auth: 'ldap' is not one of 'token', 'approle' or 'kubernetes'" in msg
    assert "environments/dev.yaml:5: colour: unknown field 'colour'; allowed here: approvals" in msg


def test_every_check_beyond_the_schema_is_reported_in_one_paragraph(repo: Path) -> None:
    """A file that parses but breaks several rules names them all at once, not one per run."""
    _write(
        repo,
        "environments/prod.yaml",
        "upstream: staging\napprovals:\n  required: 3\n  approvers: [rm1, rm1]\n"
        "  trustedSigners: [/etc/key.asc]\nwindows:\n  allow:\n  - rrule: FREQ=DAILY\n"
        "    start: 2030-01-01T00:00:00\n    duration: 1h\n    timeZone: Mars/Olympus\n",
    )
    msg = _error(repo)
    assert msg.startswith("environments/prod.yaml:3: approvals.required is 3 but only 2")
    assert "approvals.approvers lists a name twice" in msg
    assert "environments/prod.yaml:5: approvals.trustedSigners: '/etc/key.asc'" in msg
    assert "environments/prod.yaml:8: windows.allow[0]: timeZone 'Mars/Olympus'" in msg


def test_camel_case_and_snake_case_keys(repo: Path) -> None:
    _write(
        repo,
        "promote.yaml",
        "main_branch: trunk\nforge:\n  type: gitea\n  tokenEnv: T\n"
        "policy:\n  allow_latest: [dev]\n",
    )
    _write(
        repo,
        "environments/dev.yaml",
        "cluster:\n  in_cluster: true\nsync:\n  selfHeal: false\n  interval: 5m\n"
        "secrets:\n  vault:\n    address: http://vault:8200\n    kv_mount: kv\n"
        "    authMount: k8s\n    auth: kubernetes\n",
    )
    project = config.load_project(repo)
    assert project.config == config.ProjectConfig(
        main_branch="trunk",
        forge=config.ForgeConfig(type="gitea", token_env="T"),
        policy=config.PolicyConfig(allow_latest=["dev"]),
    )
    dev = project.env("dev").config
    assert dev.cluster.in_cluster is True
    assert dev.sync.self_heal is False and dev.sync.interval == timedelta(minutes=5)
    assert dev.secrets.vault == config.VaultConfig(
        address="http://vault:8200", kv_mount="kv", auth_mount="k8s", auth="kubernetes"
    )


def test_negative_required_approvals_refused(repo: Path) -> None:
    _write(repo, "environments/prod.yaml", "upstream: staging\napprovals:\n  required: -1\n")
    msg = _error(repo)
    assert msg.startswith(
        "environments/prod.yaml:3: approvals.required: Input should be greater than or equal to 0"
    )


def test_required_approvals_as_text(repo: Path) -> None:
    _write(
        repo,
        "environments/prod.yaml",
        "upstream: staging\napprovals:\n  required: '1'\n  approvers: [rm1]\n",
    )
    assert config.load_project(repo).env("prod").config.approvals.required == 1


def test_null_section_is_refused(repo: Path) -> None:
    _write(repo, "promote.yaml", "forge: null\n")
    msg = _error(repo)
    assert msg.startswith("promote.yaml:1: forge: Input should be a mapping")


def test_null_optional_section_is_none(repo: Path) -> None:
    _write(repo, "environments/dev.yaml", "secrets:\n  vault: null\ngates:\n  soak: null\n")
    dev = config.load_project(repo).env("dev").config
    assert dev.secrets.vault is None and dev.gates.soak is None


def test_duplicate_key_is_invalid_yaml(repo: Path) -> None:
    _write(repo, "environments/dev.yaml", "sync:\n  prune: true\n  prune: false\n")
    msg = _error(repo)
    assert "environments/dev.yaml:3: not valid YAML" in msg and "duplicate key" in msg


def test_models_are_frozen_values() -> None:
    rule = config.IgnoreRule(kind="Deployment", name="web", paths=["/spec/replicas"])
    assert rule == config.IgnoreRule(kind="Deployment", name="web", paths=["/spec/replicas"])
    assert config.SyncConfig().ignore == [] and config.SyncConfig().ignore is not rule.paths
    with pytest.raises(AttributeError):
        rule.kind = "StatefulSet"  # type: ignore[misc]


def test_trusted_signers_name_file_line_and_fix(repo: Path) -> None:
    text = (repo / "environments/prod.yaml").read_text()
    signers = "  trustedSigners:\n    - keys/ci/ci.asc\n    - /etc/passwd\n"
    _write(
        repo,
        "environments/prod.yaml",
        text.replace("  allowSelfApproval: false\n", "  allowSelfApproval: false\n" + signers),
    )
    (repo / "keys/ci").mkdir()
    (repo / "keys/ci/ci.asc").write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    message = _error(repo)
    assert message.startswith("environments/prod.yaml:13: approvals.trustedSigners: '/etc/passwd'")
    assert "40-hex fingerprint" in message
    fpr = "AB" * 20
    _write(
        repo,
        "environments/prod.yaml",
        text.replace(
            "  allowSelfApproval: false\n",
            f"  allowSelfApproval: false\n  trustedSigners: [keys/ci/ci.asc, {fpr}]\n",
        ),
    )
    prod = config.load_project(repo).env("prod").config.approvals
    assert prod.trusted_signers == ["keys/ci/ci.asc", fpr] and prod.required == 2


PROD_WINDOWS = """upstream: staging
approvals:
  required: 2
  approvers: [rm1, rm2]
windows:
  allow:
  - rrule: FREQ=WEEKLY;BYDAY=MO,TU,WE,TH
    start: 2026-01-05T09:00:00
    duration: 8h
    timeZone: Europe/Berlin
{extra}"""


def test_windows_load_with_their_zone_and_break_glass_default(repo: Path) -> None:
    _write(repo, "environments/prod.yaml", PROD_WINDOWS.format(extra=""))
    prod = config.load_project(repo).env("prod").config
    rule = prod.windows.allow[0]
    assert rule.time_zone == "Europe/Berlin" and rule.duration == timedelta(hours=8)
    assert rule.start.hour == 9 and rule.start.tzinfo is None
    assert prod.break_glass_required == 2  # the policy's approvals unless set


@pytest.mark.parametrize(
    ("old", "new", "where", "says"),
    [
        ("Europe/Berlin", "Mars/Olympus", "prod.yaml:7", "not an IANA time zone"),
        ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH", "FREQ=SOMETIMES", "prod.yaml:7", "not an RFC 5545"),
        ("duration: 8h", "duration: 0s", "prod.yaml:7", "duration must be positive"),
        ("2026-01-05T09:00:00", "'2026-01-05T09:00:00+01:00'", "prod.yaml:8", "without an offset"),
    ],
)
def test_a_bad_window_names_file_line_and_fix(
    repo: Path, old: str, new: str, where: str, says: str
) -> None:
    _write(repo, "environments/prod.yaml", PROD_WINDOWS.format(extra="").replace(old, new))
    msg = _error(repo)
    assert where in msg and says in msg, msg


def test_an_unsatisfiable_break_glass_setting_is_refused(repo: Path) -> None:
    extra = "  breakGlass:\n    required: 3\n"
    _write(repo, "environments/prod.yaml", PROD_WINDOWS.format(extra=extra))
    msg = _error(repo)
    assert "prod.yaml:12" in msg and "windows.breakGlass.required is 3" in msg
    assert "only 2 approvers" in msg


def test_verification_after_deploy_loads_and_names_a_typo(repo: Path) -> None:
    _write(repo, "environments/dev.yaml", "verification:\n  healthyFor: 10m\n")
    dev = config.load_project(repo).env("dev").config
    assert dev.verification is not None and dev.verification.healthy_for == timedelta(minutes=10)
    assert config.load_project(repo).env("staging").config.verification is None
    _write(repo, "environments/dev.yaml", "verification:\n  healthyFr: 10m\n")
    msg = _error(repo)
    assert "environments/dev.yaml:2" in msg and "healthyFor" in msg


def test_the_http_check_of_verification_loads_and_refuses_a_bad_url(repo: Path) -> None:
    text = "verification:\n  healthyFor: 2m\n  http:\n    url: {url}\n    bodyContains: ok\n"
    _write(repo, "environments/dev.yaml", text.format(url="http://web-app.dev/healthz"))
    check = config.load_project(repo).env("dev").config.verification
    assert check is not None and check.http is not None
    assert check.http.expect_status == 200 and check.http.body_contains == "ok"
    _write(repo, "environments/dev.yaml", text.format(url="web-app.dev/healthz"))
    msg = _error(repo)
    assert "environments/dev.yaml:3" in msg and "not an http:// or https:// URL" in msg


JOB = (
    "verification:\n  healthyFor: 2m\n  job:\n    metadata: {{labels: {{team: web}}}}\n"
    "    spec:\n      template:\n        spec:\n          containers:\n"
    "          - {{name: smoke, {image}}}\nrollback: {rollback}\n"
)


def test_the_job_check_and_rollback_mode_load_and_a_job_without_image_is_refused(
    repo: Path,
) -> None:
    _write(repo, "environments/dev.yaml", JOB.format(image="image: smoke:1", rollback="auto"))
    dev = config.load_project(repo).env("dev").config
    assert dev.verification is not None and dev.verification.job is not None
    assert dev.verification.job.metadata.labels == {"team": "web"}
    assert dev.verification.job.spec["template"]["spec"]["containers"][0]["image"] == "smoke:1"
    assert dev.verification.job.timeout == timedelta(minutes=10) and dev.rollback == "auto"
    assert config.load_project(repo).env("staging").config.rollback == "pr"
    _write(repo, "environments/dev.yaml", JOB.format(image="args: [x]", rollback="pr"))
    msg = _error(repo)
    assert "environments/dev.yaml:3" in msg and "needs an image" in msg
    _write(repo, "environments/dev.yaml", JOB.format(image="image: smoke:1", rollback="yes"))
    assert "rollback" in _error(repo) and "'auto'" in _error(repo)


def test_auto_promote_needs_an_upstream(repo: Path) -> None:
    staging = repo / "environments/staging.yaml"
    staging.write_text(staging.read_text() + "autoPromote: true\n")
    assert config.load_project(repo).env("staging").config.auto_promote
    dev = repo / "environments/dev.yaml"
    dev.write_text(dev.read_text() + "autoPromote: true\n")
    msg = _error(repo)
    assert "environments/dev.yaml:" in msg and "autoPromote: dev has no upstream" in msg, msg


def test_every_environment_file_broken_names_each_one(repo: Path) -> None:
    """With isolation (status, envs, validate) and every file broken, each fault is named."""
    for env in ("dev", "staging", "prod"):
        _write(repo, f"environments/{env}.yaml", f"colour{env}: blue\n")
    with pytest.raises(ConfigError) as exc:
        config.load_project(repo, isolate=True)
    assert "none of the 3 environment files loads (dev, prod, staging)" in str(exc.value)
    assert [p.split(":")[0] for p in exc.value.problems] == [
        "environments/dev.yaml",
        "environments/prod.yaml",
        "environments/staging.yaml",
    ]


def test_cycle_names_a_file_in_the_cycle(repo: Path) -> None:
    """dev leads into a cycle (dev -> staging -> prod -> staging): dev's file is not at
    fault, the cycle's are."""
    _write(repo, "environments/dev.yaml", "upstream: staging\n")
    _write(repo, "environments/staging.yaml", "upstream: prod\n")
    msg = _error(repo)
    assert "dev.yaml" not in msg, msg
    assert ("environments/staging.yaml:1:" in msg and "staging -> prod -> staging" in msg) or (
        "environments/prod.yaml:2:" in msg and "prod -> staging -> prod" in msg
    ), msg


def test_own_upstream_and_missing_overlay_name_their_line(repo: Path) -> None:
    _write(repo, "environments/staging.yaml", "# staging\nupstream: staging\n")
    assert "environments/staging.yaml:2: upstream: an environment cannot be" in _error(repo)
    _write(repo, "environments/staging.yaml", "upstream: dev\noverlay: overlays/nowhere\n")
    assert "environments/staging.yaml:2: overlay: the folder overlays/nowhere/" in _error(repo)
