"""The pure promotion plan: which images move, byte-exact edits, gates, trailers, Markdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from promote import config
from promote.errors import UsageError
from promote.forge.base import PRKind
from promote.kustomize import overlay
from promote.kustomize.overlay import Image
from promote.promotion import diff, plan
from promote.secrets.authoring.parity import Gap, ParityResult

SRC = [
    Image("web-app", "dev-registry/web-app", "v2.4.0"),
    Image("api", "dev-registry/api", "v1.8.0", "sha256:" + "b" * 64),
    Image("worker", None, "v0.3.0"),
]
TGT = [
    Image("web-app", "prod-registry/web-app", "v2.3.2"),
    Image("api", "prod-registry/api", "v1.8.0"),
]
KZ = """\
resources:
- ../base/web-app   # front end
images:
# promoted by `promote to`
- name: web-app
  newName: prod-registry/web-app
  newTag: "v2.3.2"  # pinned
- name: api
  newName: prod-registry/api
  newTag: v1.8.0
patches: []
"""
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

SHA = "sha256:" + "0123456789abcdef" * 4


def _wanted(apps: tuple[str, ...] = ()) -> list[Image]:
    return plan.promotion_targets(
        SRC,
        TGT,
        source="dev",
        source_apps=lambda: ["web-app", "api", "worker", "billing-db"],
        apps=apps,
    )


def test_promotion_moves_tag_and_digest_but_keeps_target_registry() -> None:
    changes = plan.image_changes(TGT, _wanted())
    assert [(c.name, c.old_version, c.new_version) for c in changes] == [
        ("web-app", "v2.3.2", "v2.4.0"),
        ("api", "v1.8.0", "v1.8.0@sha256:" + "b" * 64),
        ("worker", "(none)", "v0.3.0"),
    ]
    assert changes[0].new.new_name == "prod-registry/web-app"
    assert changes[2].new.new_name is None  # a new entry takes the source's name


def test_app_filter_limits_the_promotion() -> None:
    changes = plan.image_changes(TGT, _wanted(("web-app",)))
    assert [c.trailer for c in changes] == ["web-app=v2.4.0"]


def test_unknown_app_is_a_usage_error_naming_the_source_apps() -> None:
    with pytest.raises(UsageError, match=r"--app nope: dev has no such app .*web-app"):
        _wanted(("nope",))


def test_nothing_to_promote_when_tags_match() -> None:
    same = [Image(i.name, "x", i.new_tag, i.digest) for i in SRC]
    assert (
        plan.image_changes(same, plan.promotion_targets(SRC, same, source="dev", source_apps=list))
        == []
    )


def test_apply_changes_edits_only_the_image_values_byte_exact() -> None:
    changes = plan.image_changes(TGT, _wanted(("web-app",)))
    after = plan.apply_changes(KZ, changes, "kustomization.yaml")
    assert after == KZ.replace('newTag: "v2.3.2"  # pinned', 'newTag: "v2.4.0"  # pinned')


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("web=v1", ("web", "v1", None)),
        (f"web@{SHA}", ("web", None, SHA)),
        (f"web=v1@{SHA}", ("web", "v1", SHA)),
        (
            "registry.example.com/acme/web-app=v2.4.1-rc.1_b",
            ("registry.example.com/acme/web-app", "v2.4.1-rc.1_b", None),
        ),
    ],
)
def test_parse_image_arg(arg: str, expected: tuple[str, str | None, str | None]) -> None:
    assert plan.parse_image_arg(arg) == expected


@pytest.mark.parametrize("arg", ["web", "=v1", "web=", "web@abc"])
def test_parse_image_arg_rejects_bad_input(arg: str) -> None:
    with pytest.raises(UsageError, match="NAME=TAG"):
        plan.parse_image_arg(arg)


@pytest.mark.parametrize(
    ("arg", "problem"),
    [
        ("web-app=v1\n  newName: evil.example/x", "is not a valid image tag"),
        ("web-app=v1;touch x", "is not a valid image tag"),
        ("web-app=$(touch x)", "is not a valid image tag"),
        ("web-app@sha256:abc", "is not a valid digest"),
        ("Web-App=v1", "must be lowercase"),
    ],
)
def test_parse_image_arg_refuses_what_is_not_an_image_reference(arg: str, problem: str) -> None:
    with pytest.raises(UsageError) as info:
        plan.parse_image_arg(arg)
    assert info.value.exit_code == 2
    assert str(info.value).startswith(repr(arg)) and problem in str(info.value)


def _soak(status: plan.EnvStatus | None) -> plan.GateResult | None:
    changes = plan.image_changes(TGT, _wanted(("web-app",)))
    return plan.check_soak(timedelta(minutes=30), status, changes, source="dev", now=NOW)


def test_soak_gate_without_agent_status_is_unknown_and_blocks_with_reason() -> None:
    gate = _soak(None)
    assert gate is not None and gate.status is plan.GateStatus.UNKNOWN and gate.blocks
    assert "no status from dev's reconcile agent" in gate.reason


@pytest.mark.parametrize(
    ("status", "expected", "reason"),
    [
        (plan.EnvStatus("dev", True, True, {"web-app": "v2.3.9"}, NOW), "blocked", "does not run"),
        (plan.EnvStatus("dev", True, False, {"web-app": "v2.4.0"}, None), "blocked", "not healthy"),
        (
            plan.EnvStatus("dev", True, True, {"web-app": "v2.4.0"}, NOW - timedelta(minutes=10)),
            "blocked",
            "20m to go",
        ),
        (
            plan.EnvStatus("dev", True, True, {"web-app": "v2.4.0"}, NOW - timedelta(hours=1)),
            "passed",
            "healthy",
        ),
    ],
)
def test_soak_gate_decisions(status: plan.EnvStatus, expected: str, reason: str) -> None:
    gate = _soak(status)
    assert gate is not None and gate.status == expected and reason in gate.reason


def test_no_soak_configured_means_no_gate() -> None:
    assert plan.check_soak(None, None, [], source="dev", now=NOW) is None


def _plan(**kw: object) -> plan.Plan:
    changes = tuple(plan.image_changes(TGT, _wanted(("web-app",))))
    fields: dict[str, object] = {
        "kind": PRKind.PROMOTION,
        "source": "dev",
        "target": "prod",
        "revision": "a" * 40,
        "source_revision": "a" * 40,
        "overlay_file": "overlays/prod/kustomization.yaml",
        "changes": changes,
        "approvals": config.ApprovalsConfig(required=2, approvers=["rm1", "rm2"]),
        **kw,
    }
    return plan.Plan(**fields)  # type: ignore[arg-type]


def test_commit_message_carries_the_trailers() -> None:
    message = plan.commit_message(_plan(), "Promote dev -> prod")
    trailers = message.strip().split("\n\n")[-1].splitlines()
    assert trailers == [
        "Promote-Env: prod",
        "Promote-Kind: promotion",
        "Promote-From: dev",
        f"Promote-Source-Revision: {'a' * 40}",
        "Promote-Images: web-app=v2.4.0",
    ]


def test_parity_gap_and_gate_block_and_are_listed() -> None:
    p = _plan(
        parity=ParityResult("dev", "prod", (Gap("db", "password"),)),
        gates=(plan.GateResult("soak 30m", plan.GateStatus.UNKNOWN, "no status"),),
    )
    assert p.blocked
    assert p.problems() == [
        "prod: Secret 'db' has no key 'password'",
        "gate soak 30m: unknown: no status",
    ]


def test_markdown_body_has_table_policy_and_redacted_diff_but_no_secret_value() -> None:
    canary = "CANARY-1f2e3d"
    before = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
               "stringData": {"password": canary}}]  # fmt: skip
    after = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
              "stringData": {"password": canary + "-new", "user": canary}}]  # fmt: skip
    p = _plan(diff=tuple(diff.diff_objects(before, after)), parity=ParityResult("dev", "prod"))
    body = plan.to_markdown(p)
    assert "| web-app | web-app | v2.3.2 | v2.4.0 |" in body
    assert "2 signed approval(s) required from rm1, rm2" in body
    assert "OK: every Secret and key" in body
    assert "password: <changed>" in body and "user: <added>" in body
    assert canary not in body and canary not in str(plan.to_dict(p))


def test_default_titles() -> None:
    assert plan.default_title(_plan()) == "Promote dev -> prod: web-app v2.4.0"
    rollback = _plan(kind=PRKind.ROLLBACK, source=None, source_revision="c" * 40)
    assert plan.default_title(rollback).startswith("Roll back prod to cccccccccccc")


BIG = """\
# header comment
resources:
  - ../base/a
images:
  # first entry
  - name: a
    newName: reg/a
    newTag: "v1"  # quoted
  - name: b
    newTag: v1
    digest: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  # between
  - name: c
    newName: reg/c
    newTag: 'v1'

  - name: d
    newTag: v1
patches: []  # tail
"""


def test_many_changes_edit_exactly_like_one_at_a_time() -> None:
    new = [
        Image("a", "reg/a", "v2"),
        Image("b", None, "v2"),  # digest removed
        Image("c", "reg/c", "v2", "sha256:" + "c" * 64),  # digest added
        Image("d", None, "v2"),
        Image("e", None, "v1"),  # appended
    ]
    changes = plan.image_changes([], new)
    sequential = BIG
    for img in new:
        sequential = overlay.set_image(sequential, img)
    assert plan.apply_changes(BIG, changes, "k.yaml") == sequential
    assert "# between\n" in sequential and "patches: []  # tail\n" in sequential


def test_app_known_only_from_the_source_bases_is_accepted() -> None:
    assert _wanted(("billing-db",)) == []
