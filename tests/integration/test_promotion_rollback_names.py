"""A rollback that restores an image's name as well as its tag (issue 16: the agent's
rollback PR after a build from another registry failed) is promote's own commit: its
``Promote-Names`` trailer reproduces the name, so `promote merge` takes it like any plan."""

from __future__ import annotations

import pytest

from tests.integration.test_promotion_helpers import (  # noqa: F401  (gpg_keys is a fixture)
    GitOps,
    Keys,
    gpg_keys,
)
from tests.integration.test_promotion_trust import cli, ops  # noqa: F401  (ops is a fixture)

pytestmark = pytest.mark.integration
DEV_KZ = "overlays/dev/kustomization.yaml"
GOOD = "newName: registry.example.com/acme/web-app\n  newTag: v2.4.0"


def test_a_rollback_restoring_an_image_name_merges(ops: GitOps) -> None:  # noqa: F811
    path = ops.clone / DEV_KZ
    assert GOOD in path.read_text()
    path.write_text(path.read_text().replace(GOOD, GOOD.replace("acme", "mirror") + "1"))
    ops.commit_and_push("CI: web-app v2.4.01 built on the mirror")
    opened = cli(ops, "rollback", "dev", "-o", "json").json()
    number = str(opened["pullRequest"]["number"])
    shown = cli(ops, "show", number).stdout
    assert "REFUSED" not in shown and "the plan does not explain" not in shown, shown
    cli(ops, "merge", number)
    assert GOOD in ops.main_file(DEV_KZ)
