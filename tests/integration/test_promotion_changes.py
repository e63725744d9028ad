"""promotion.changes: a change's scope and each affected environment's rendered diff (real Git
and kustomize), what the dashboard's PR and history diff pages show."""

from __future__ import annotations

from pathlib import Path

import pytest

from promote.promotion import changes, engine
from tests.integration.test_promotion_helpers import CANARY, example_gitops, write_secret

pytestmark = pytest.mark.integration


def test_a_base_and_governance_change_affects_every_environment(tmp_path: Path) -> None:
    ops = example_gitops(tmp_path)
    before = ops.git("rev-parse", "HEAD")
    base = ops.clone / "overlays/base/web-app/deployment.yaml"
    base.write_text(base.read_text().replace("containerPort: 8080", "containerPort: 8081"))
    env_file = ops.clone / "environments/prod.yaml"
    env_file.write_text(env_file.read_text() + "# reviewed\n")
    after = ops.commit_and_push("base port and a governance edit")
    with engine.session(ops.clone) as s:
        change = changes.between(s, before, after, tmp_path / "trees")
    assert set(change.paths) == {"overlays/base/web-app/deployment.yaml", "environments/prod.yaml"}
    assert change.scope.envs == ("dev", "staging", "prod")
    assert change.scope.governance == ("environments/prod.yaml",)
    for env in ("dev", "staging", "prod"):
        (only,) = change.diffs[env]
        assert only.ref.endswith("/web-app") and "+        - containerPort: 8081" in only.text


def test_a_secret_change_shows_which_key_changed_never_a_value(tmp_path: Path) -> None:
    ops = example_gitops(tmp_path)
    before = ops.git("rev-parse", "HEAD")
    write_secret(ops.clone, "staging", "db", {"password": CANARY + "-new", "user": CANARY})
    after = ops.commit_and_push("rotate staging's db password")
    with engine.session(ops.clone) as s:
        change = changes.between(s, before, after, tmp_path / "trees")
        again = changes.env_diff(s, "staging", before, after, tmp_path / "trees")
    assert change.scope.envs == ("staging",)
    (secret,) = change.diffs["staging"]
    assert secret.ref.endswith("Secret staging/db")
    # Only a value changed: the line still shows, with no value on either side. (Each SOPS
    # encryption changes every ciphertext, so user reads changed too.)
    assert "-  password: <redacted old value>\n" in secret.text
    assert "+  password: <changed>\n" in secret.text and CANARY not in secret.text
    assert again == change.diffs["staging"]
