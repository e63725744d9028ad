"""One environment's broken file never stops a command about another environment (issue 14's
rule beyond the agents): a real bare Git remote, prod's file broken on main."""

from __future__ import annotations

import pytest

from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    gpg_keys,
    push_to_branch,
    replace_in,
)
from tests.integration.test_promotion_trust import PROD_KZ, cli, open_pr, ops  # noqa: F401

pytestmark = pytest.mark.integration
BROKEN = """windows:
  allow:
  - rrule: FREQ=DAILY
    start: 2030-01-01T00:00:00
    duration: 1h
    timeZone: Mars/Olympus
"""


def _break_prod(ops: GitOps) -> None:  # noqa: F811
    prod = ops.clone / "environments/prod.yaml"
    prod.write_text(prod.read_text() + BROKEN)
    ops.commit_and_push("prod: a window in a zone that does not exist")


def test_status_shows_every_environment_and_marks_the_broken_one(ops: GitOps) -> None:  # noqa: F811
    _break_prod(ops)
    shown = cli(ops, "status", code=1)
    assert "dev" in shown.stdout and "staging" in shown.stdout  # the matrix is there
    assert "error: prod: environments/prod.yaml:" in shown.stderr
    assert "Mars/Olympus" in shown.stdout + shown.stderr
    doc = cli(ops, "status", "-o", "json", code=1).json()
    assert doc["pipeline"] == ["dev", "staging", "prod"]
    cell = doc["apps"][0]["environments"]["prod"]
    assert "timeZone" in cell["error"] and "environments/prod.yaml" in cell["error"]
    assert doc["apps"][0]["environments"]["staging"]["error"] is None
    assert doc["errors"][0]["message"].startswith("environments/prod.yaml:")


def test_promoting_into_staging_works_while_prod_is_broken(ops: GitOps) -> None:  # noqa: F811
    _break_prod(ops)
    cli(ops, "set-image", "dev", "api=v9.9.9")
    planned = cli(ops, "to", "staging", "--dry-run", "-o", "json").json()
    assert "v9.9.9" in [c["to"] for c in planned["plan"]["changes"]]
    refused = cli(ops, "to", "prod", "--dry-run", code=1)
    assert "environments/prod.yaml" in refused.stderr and "Mars/Olympus" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_staging_pr_merges_but_one_touching_the_broken_prod_is_refused(ops: GitOps) -> None:  # noqa: F811
    _break_prod(ops)
    cli(ops, "set-image", "dev", "api=v9.9.9")
    number, branch = open_pr(ops, "to", "staging")
    cli(ops, "approve", str(number), "--as", "rm1")
    cli(ops, "merge", str(number))
    cli(ops, "set-image", "dev", "api=v9.9.10")
    number, branch = open_pr(ops, "to", "staging")
    push_to_branch(ops, branch, replace_in(PROD_KZ, "newTag: v1.7.5", "newTag: v6.6.6"),
                   sign_as="dev1")  # fmt: skip
    refused = cli(ops, "approve", str(number), "--as", "rm1", code=1)
    assert "environments/prod.yaml" in refused.stderr and "Mars/Olympus" in refused.stderr
    assert "v6.6.6" not in ops.main_file(PROD_KZ)


def test_envs_lists_the_others_and_names_the_broken_file(ops: GitOps) -> None:  # noqa: F811
    _break_prod(ops)
    ops.git("pull", "-q", "origin", "main")  # the working tree has the broken file too
    shown = cli(ops, "envs", code=1)
    assert "dev -> staging" in shown.stdout and "prod: environments/prod.yaml" in shown.stderr
    doc = cli(ops, "envs", "-o", "json", code=1).json()
    assert doc["pipeline"] == ["dev", "staging"] and "prod.yaml" in doc["errors"][0]["message"]


def test_validate_names_every_broken_file_and_checks_the_others(ops: GitOps) -> None:  # noqa: F811
    """One run names every fault: prod's broken file and staging's, while dev is still
    rendered and checked (validate once stopped at the first broken file)."""
    _break_prod(ops)
    ops.git("pull", "-q", "origin", "main")
    staging = ops.clone / "environments/staging.yaml"
    staging.write_text(staging.read_text() + "selfHeel: true\n")
    shown = cli(ops, "validate", code=1)
    assert "ok dev:" in shown.stdout and "staging" not in shown.stdout
    assert "environment file(s) that do not load: prod, staging" in shown.stderr
    assert "Mars/Olympus" in shown.stderr and "selfHeel" in shown.stderr
    assert "Traceback" not in shown.stderr
    doc = cli(ops, "validate", "-o", "json", code=1).json()
    by_env = {e["name"]: e for e in doc["environments"]}
    assert by_env["dev"]["ok"] is True and by_env["dev"]["objects"] > 0
    assert not by_env["prod"]["ok"] and "timeZone" in by_env["prod"]["error"]
    assert [e["code"] for e in doc["errors"]] == ["config", "config"]
    only = cli(ops, "validate", "--env", "dev", "-o", "json").json()  # the others not asked
    assert [e["name"] for e in only["environments"]] == ["dev"]
