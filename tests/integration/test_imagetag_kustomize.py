"""``imagetag`` against the real kustomize: building an overlay without its ``images:`` and
applying them in Python gives exactly the objects kustomize builds with them.

A promotion's PR diff is computed this way, so a difference here would be a wrong diff in
front of a release manager.
"""

from __future__ import annotations

import copy as copy_module
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from promote.kustomize import imagetag, render

# Images as the base writes them: tags, digests, registries with ports, names that are
# prefixes of each other, and names whose "." kustomize reads as a regex wildcard.
BASE_IMAGES = [
    "nginx",
    "nginx:1.7",
    "nginx@sha256:" + "a" * 64,
    "nginx:1.7@sha256:" + "b" * 64,
    "docker.io/library/nginx:1.2",
    "localhost:5000/team/app:3",
    "localhost:5000/team/app",
    "app0",
    "app00:v1",
    "my.app:1",
    "myxapp:1",
    "busybox:{{.Tag}}",
    "reg.example.com/web:v1",
]


def _workloads() -> list[dict[str, Any]]:
    """Objects with images at every place the transformer looks, and some where it does not."""

    def containers(images: list[str]) -> list[dict[str, Any]]:
        return [{"name": f"c{i}", "image": img} for i, img in enumerate(images)]

    half = len(BASE_IMAGES) // 2
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"image": "nginx"}},
            "spec": {
                "template": {
                    "spec": {
                        "containers": containers(BASE_IMAGES[:half]),
                        "initContainers": containers(BASE_IMAGES[half:]),
                    }
                }
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "pod"},
            "spec": {"containers": containers(BASE_IMAGES[::-1])},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "job"},
            "spec": {
                "schedule": "* * * * *",
                "jobTemplate": {
                    "spec": {"template": {"spec": {"containers": containers(BASE_IMAGES)}}}
                },
            },
        },
        {  # a custom resource: the legacy walk finds containers at any depth
            "apiVersion": "example.com/v1",
            "kind": "Worker",
            "metadata": {"name": "worker"},
            "spec": {"pools": [{"containers": containers(["nginx:1.7", "app0"])}]},
        },
        {  # CRDs are never touched
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "workers.example.com"},
            "spec": {"containers": containers(["nginx"])},
        },
    ]


ENTRY_SETS = {
    "tag": "- name: nginx\n  newTag: '1.10'\n",
    "name only": "- name: app0\n  newName: registry.example.com/app0\n",
    "digest replaces tag": "- name: app00\n  digest: sha256:" + "c" * 64 + "\n",
    "tag and digest": "- name: localhost:5000/team/app\n  newTag: v9\n  digest: sha256:dd\n",
    "wildcard dot": "- name: my.app\n  newName: other\n  newTag: '2'\n",
    "registry name": "- name: docker.io/library/nginx\n  newName: mirror/nginx\n",
    "null tag": "- name: busybox\n  newName: mirror/busybox\n  newTag: null\n",
    "quoted": '- name: "reg.example.com/web"\n  newTag: "v2.0"\n',
    "chained": "- name: nginx\n  newName: edge\n- name: edge\n  newTag: v3\n",
    "no match": "- name: nothing-here\n  newTag: v1\n",
}


def _overlay(tmp_path: Path, entries: str, objects: list[dict[str, Any]]) -> Path:
    base = tmp_path / "base"
    base.mkdir(exist_ok=True)
    (base / "objects.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    (base / "kustomization.yaml").write_text("resources:\n- objects.yaml\n")
    over = tmp_path / "overlay"
    over.mkdir(exist_ok=True)
    (over / "kustomization.yaml").write_text(
        "# the overlay\nnamespace: team\nresources:\n- ../base\n"
        f"images:\n{entries}"
        "commonLabels:\n  tier: web\n"
    )
    return over


def _deferred(over: Path, kz: render.Kustomize) -> list[dict[str, Any]]:
    """Build without ``images:`` (a copy beside the original) and apply them in Python."""
    text = (over / "kustomization.yaml").read_text()
    parts = imagetag.split(text, "overlay/kustomization.yaml")
    assert parts is not None
    copy = over.parent / "stripped"
    copy.mkdir(exist_ok=True)
    (copy / "kustomization.yaml").write_text(parts.text)
    built = kz.build(copy)
    untouched = copy_module.deepcopy(built)
    applied = imagetag.apply(built, parts.images)
    assert built == untouched  # the input is never edited (results share unchanged objects)
    return applied


@pytest.fixture(scope="module", params=["preferred", "kubectl"])
def kz(request: pytest.FixtureRequest) -> render.Kustomize:
    """Both kustomizes promote may run: the one it finds first (the pinned standalone build,
    v5.7) and `kubectl kustomize` (v5.5 here): the port must match each."""
    if request.param == "kubectl":
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            pytest.fail("no kubectl on PATH: install it (the machine spec lists it)")
        return render.Kustomize([kubectl, "kustomize"])
    return render.Kustomize()


@pytest.mark.parametrize("name", list(ENTRY_SETS))
def test_deferred_images_equal_kustomize(tmp_path: Path, kz: render.Kustomize, name: str) -> None:
    over = _overlay(tmp_path, ENTRY_SETS[name], _workloads())
    full = kz.build(over)
    assert _deferred(over, kz) == full
    if name != "no match":  # the case changes something, so equality is not vacuous
        assert full != kz.build(over.parent / "stripped")


def test_random_image_lists_equal_kustomize(tmp_path: Path, kz: render.Kustomize) -> None:
    rng = random.Random(20261126)
    names = ["nginx", "app0", "app00", "my.app", "localhost:5000/team/app", "busybox", "edge"]
    lines = []
    for _ in range(12):
        entry = [f"- name: {rng.choice(names)}"]
        if rng.random() < 0.5:
            entry.append(f"  newName: {rng.choice([*names, 'mirror/x', 'reg:443/y'])}")
        if rng.random() < 0.6:
            entry.append(f"  newTag: v{rng.randint(1, 20)}")
        if rng.random() < 0.3:
            entry.append(f"  digest: sha256:{rng.randint(0, 9) * 8}")
        lines += entry
    over = _overlay(tmp_path, "\n".join(lines) + "\n", _workloads())
    assert _deferred(over, kz) == kz.build(over)


def test_split_keeps_everything_else_byte_for_byte() -> None:
    text = (
        "# head\nresources:\n- a\nimages:\n- name: x\n  newTag: v1  # pinned\n\n"
        "# tail\nnamePrefix: p-\n"
    )
    parts = imagetag.split(text, "k.yaml")
    assert parts is not None
    assert parts.text == "# head\nresources:\n- a\nnamePrefix: p-\n"
    assert parts.images == (imagetag.ImageTag("x", new_tag="v1"),)


@pytest.mark.parametrize(
    "text",
    [
        "resources: []\nimages:\n- name: a\n  newTag: v1\nreplacements: []\n",
        "resources: []\nimages:\n- name: a\n  tagSuffix: -x\n",  # only newer kustomizes know it
        "resources: []\nimages:\n- name: 'a*'\n  newTag: v1\n",  # not a plain image name
        "{resources: [], images: [{name: a, newTag: v1}]}\n",  # flow style: no line to cut
        "resources: []\n",  # no images at all: nothing to defer
        "resources: []\nimages:\n- name: a\n  newTag: 1.10\n",  # kustomize refuses the number
    ],
)
def test_split_declines_what_it_cannot_reproduce(text: str) -> None:
    assert imagetag.split(text, "k.yaml") is None


def test_image_volumes_are_left_to_kustomize() -> None:
    pod = {
        "kind": "Pod",
        "spec": {
            "containers": [{"name": "c", "image": "nginx"}],
            "volumes": [{"name": "v", "image": {"reference": "nginx:1"}}],
        },
    }
    with pytest.raises(imagetag.NotEmulated, match="image volumes"):
        imagetag.apply([pod], [imagetag.ImageTag("nginx", new_tag="v2")])


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("nginx", ("nginx", "", "")),
        ("nginx:1.7", ("nginx", "1.7", "")),
        ("nginx@sha256:ab", ("nginx", "", "sha256:ab")),
        ("nginx:1.7@sha256:ab", ("nginx", "1.7", "sha256:ab")),
        ("localhost:5000/team/app", ("localhost:5000/team/app", "", "")),
        ("localhost:5000/team/app:3@sha256:ab", ("localhost:5000/team/app", "3", "sha256:ab")),
        ("/odd:1", ("/odd", "1", "")),
    ],
)
def test_split_image_reads_references_as_kustomize_does(
    image: str, parts: tuple[str, str, str]
) -> None:
    assert imagetag.split_image(image) == parts
