"""The steps of ``promote demo``, in order, and what each must have achieved.

Owns the story: each step runs ``promote`` commands as the person in the story would (through
:class:`~promote.local.world.World`), then checks the outcome where it really happened (the Git
remote, an agent's ``/status``, the cluster) and returns one line saying what it checked, or
raises a PromoteError saying what did not happen. ``demo.py`` runs them and cleans up.

Must not: print, start or stop anything outside the world, or reveal a secret value.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable

from promote import config
from promote.kustomize import overlay, render
from promote.local import (
    badrelease,
    controlplane,
    drift,
    nodes,
    rollout,
    seed,
    supplychain,
    world,
)
from promote.local.seed import DemoError
from promote.local.world import ENVS, World
from promote.secrets import sops

APP, TAG = "web-app", "v2.4.1"
VAULT_PATH, VAULT_KEY = "payments/prod", "token"


class Story:
    """The steps, in order; each returns what it checked or raises a PromoteError."""

    def __init__(self, w: World, *, show_views: bool) -> None:
        self.w, self.show_views = w, show_views
        self.main = ""  # the remote's main, as the last step that moved it left it
        self.prs: dict[str, int] = {}
        self.public: dict[str, str] = {}
        self.bao: seed.OpenBao | None = None
        self.supply = supplychain.SupplyChain()

    def steps(self) -> list[tuple[str, str, Callable[[], str]]]:
        return [
            ("prerequisites", "Check the tools: the local cluster's binaries, OpenBao, gpg, "
             "kustomize, sops", self.prerequisites),
            ("openbao", "Start OpenBao (the Vault API) and store prod's payments API token",
             self.openbao),
            ("registry", "Start a local OCI registry; push the images the story promotes and "
             "sign them with a cosign key made now", self.registry),
            ("people", "Fresh GnuPG keys for rm1, rm2 (release managers) and dev1 (developer)",
             self.people),
            ("repository", "Seed a bare Git remote and a clone from the example layout",
             self.repository),
            ("age-keys", "An age identity per environment (private halves outside the clone)",
             self.age_keys),
            ("secrets", "A random database password per environment, prod's API token as a "
             "vault: reference", self.encrypt_secrets),
            ("publish", "Validate the repository and push main", self.publish),
            ("cluster", "Start a local cluster (3 kwok nodes) with a namespace per environment",
             self.cluster),
            ("agents", "Start three agents (dev, staging, prod), each holding only its own key",
             self.agents),
            ("ci-publish", f"CI publishes {APP}:{TAG} to dev", self.ci_publish),
            ("dev-sync", "The dev agent deploys it; it rolls out Healthy",
             lambda: self.synced("dev")),
            ("promote-staging", "dev1 promotes dev -> staging: a pull request",
             lambda: self.open_pr("staging")),
            ("approve-staging", "rm1 approves it (a GnuPG signature on the PR's head)",
             lambda: self.approve("staging", "rm1")),
            ("merge-staging", "rm1 merges: staging needs one approval",
             lambda: self.merge("staging", "rm1")),
            ("staging-sync", "The staging agent deploys it; it rolls out Healthy",
             lambda: self.synced("staging")),
            ("promote-prod", "dev1 promotes staging -> prod", lambda: self.open_pr("prod")),
            ("approve-prod-rm1", "rm1 approves the prod PR", lambda: self.approve("prod", "rm1")),
            ("merge-prod-refused", "rm1 tries to merge with one approval: prod needs two, refused",
             self.merge_refused),
            ("approve-prod-rm2", "rm2 approves too", lambda: self.approve("prod", "rm2")),
            ("merge-prod", "rm2 merges with two signed approvals",
             lambda: self.merge("prod", "rm2")),
            ("prod-sync", "The prod agent deploys it; it rolls out Healthy",
             lambda: self.synced("prod")),
            ("prod-pinned", "prod's gates resolved the tag to its digest and verified its "
             "signature: prod runs exactly that digest", self.prod_pinned),
            ("drift", f"Someone scales prod's {APP} by hand; the prod agent reverts it",
             self.drift),
            ("status", "The release matrix: promote status", self.status),
            *badrelease.BadRelease(self, TAG).steps(),  # verification fails, rollback
            ("history", "What reached prod, and who approved it: promote history prod",
             self.history),
        ]  # fmt: skip

    # --- the world -------------------------------------------------------------------------

    def prerequisites(self) -> str:
        binaries = controlplane.find_binaries(controllers=True)  # the error says how to build
        kwok = nodes.find_kwok()
        for tool in ("git", "gpg", "gpgconf"):
            if shutil.which(tool) is None:
                raise DemoError(f"`{tool}` is not on PATH; install Git and GnuPG.")
        kustomize = render.find_kustomize()
        env = self.w.child_env
        env["PROMOTE_CONTROLPLANE_DIR"] = str(binaries)  # children use their own cache dir
        env["PROMOTE_KWOK_DIR"] = str(kwok)
        if kustomize[-1] == "build":
            env["PROMOTE_KUSTOMIZE"] = kustomize[0]
        sops_binary = sops.find_sops()
        seed.bao_binary()
        seed.example_root()
        return (
            f"Kubernetes {controlplane.K8S_VERSION} ({binaries}), kwok ({kwok}); "
            f"kustomize: {' '.join(kustomize)}; sops: {sops_binary}"
        )

    def openbao(self) -> str:
        w = self.w
        self.bao = seed.start_openbao(w.procs, w.dir / "openbao", environ=w.child_env)
        w.record()
        w.vault_value = secrets.token_urlsafe(24)
        w.vault_tokens["prod"] = seed.seed_vault(
            self.bao, env="prod", path=VAULT_PATH, key=VAULT_KEY, value=w.vault_value
        )
        return (
            f"OpenBao dev server at {self.bao.address}; a random value written to "
            f"secret/{VAULT_PATH} (KV v2); prod's agent gets a token that may read only that"
        )

    # --- the supply chain: prod takes only signed images, pinned to their digests ----------

    def registry(self) -> str:
        """Every image dev names once CI has published TAG: what the story promotes to prod."""
        kz = seed.example_root() / "overlays" / "dev" / "kustomization.yaml"
        found = overlay.parse_images(kz.read_text(encoding="utf-8"), "overlays/dev")
        images = [(i.name, TAG if i.name == APP else str(i.new_tag)) for i in found]
        return supplychain.start(self.w, images, self.supply)

    def prod_pinned(self) -> str:
        return supplychain.check_pinned(self.w, self.supply, APP, TAG)

    def people(self) -> str:
        w = self.w
        root, outside = seed.gnupg_root(w.dir)
        if outside:
            w.state.extra_dirs.append(str(root))
        for name in ("ci", "dev1", "rm1", "rm2"):
            home = root / name
            w.state.gnupg_homes.append(str(home))
            w.record()
            if name == "ci":
                home.mkdir(parents=True, mode=0o700)  # CI signs nothing: an empty keyring
            else:
                self.public[name] = seed.new_person(home, name)
            w.actors[name] = world.Actor(name, home)
        return f"one GNUPGHOME per person under {root}; ed25519 signing keys for dev1, rm1, rm2"

    def repository(self) -> str:
        w = self.w
        assert self.bao is not None
        seed.seed_repository(w.remote, w.clone)
        seed.set_vault_address(w.clone, list(ENVS), self.bao.address)
        seed.shorten_for_demo(w.clone)
        badrelease.configure(w.clone)  # dev verifies each deploy from the first commit
        gated = supplychain.configure(w.clone, self.supply)
        for name in ("rm1", "rm2"):
            (w.clone / "keys" / "release-managers" / f"{name}.asc").write_text(self.public[name])
        developers = w.clone / "keys" / "developers"
        developers.mkdir(parents=True, exist_ok=True)
        (developers / "dev1.asc").write_text(self.public["dev1"])  # dev1 signs the PRs it opens
        project = config.load_project(w.clone)
        if tuple(project.pipeline()) != ENVS:
            raise DemoError(f"the example's pipeline is {project.pipeline()}, not {list(ENVS)}.")
        for env in ENVS:
            namespace = project.env(env).config.cluster.namespace
            if not namespace:
                raise DemoError(f"environments/{env}.yaml: cluster.namespace is not set.")
            w.namespaces[env] = namespace
        return (
            f"bare remote {w.remote}, clone {w.clone}; keys/release-managers/rm1.asc, rm2.asc and "
            f"keys/developers/dev1.asc added; secrets.vault of every environment -> "
            f"{self.bao.address}; soak gates {seed.DEMO_SOAK_S}s on staging and prod, "
            f"dev's progress deadline {seed.DEMO_PROGRESS_DEADLINE_S}s; {gated}"
        )

    def age_keys(self) -> str:
        w = self.w
        w.private.mkdir(mode=0o700)
        for env in ENVS:
            w.promote("keys", "init", env, "--out", str(w.private / f"{env}.agekey"), actor="dev1")
        return f"keys/<env>/age.txt (public) in the clone; identities in {w.private} (mode 0600)"

    def encrypt_secrets(self) -> str:
        w = self.w
        for env in ENVS:
            w.passwords[env] = secrets.token_urlsafe(24)
            # --no-pr: the seed is committed before trust starts (the pinned first commit).
            w.promote("secrets", "set", env, "db", "password=-", "--no-pr", actor="dev1",
                      stdin=w.passwords[env].encode())  # fmt: skip
        ref = f"vault:secret/{VAULT_PATH}#{VAULT_KEY}"
        w.promote("secrets", "set", "prod", "payments-api", f"{VAULT_KEY}=-", "--no-pr",
                  actor="dev1", stdin=ref.encode())  # fmt: skip
        if self.show_views:
            w.promote("secrets", "list", "prod", actor="dev1")
        return (
            "overlays/<env>/secrets/db.sops.yaml encrypted to each environment's key; "
            f"prod's payments-api holds the reference {ref}; values went in on stdin"
        )

    def publish(self) -> str:
        w = self.w
        w.promote("validate", actor="dev1")
        _check_no_plaintext(w)
        seed.git("add", "-A", cwd=w.clone)
        seed.git("commit", "-q", "-m", "Seed the demo: keys, release managers, secrets",
                       cwd=w.clone)  # fmt: skip
        seed.git("push", "-q", "origin", "main", cwd=w.clone)
        self.main = seed.main_sha(w.remote)
        return f"validate passed; main is {self.main[:12]} (no private key or value in the tree)"

    def cluster(self) -> str:
        w = self.w
        w.state.cluster_dir = str(w.cluster_dir)
        w.record()
        w.promote("cluster", "up", "--dir", str(w.cluster_dir), actor="dev1", in_repo=False)
        state = controlplane.read_state(w.cluster_dir)
        if state is None or not controlplane.is_running(state):
            raise DemoError(f"`promote cluster up` left no running cluster in {w.cluster_dir}")
        w.cluster_pids = state.pids()
        w.child_env["KUBECONFIG"] = str(w.kubeconfig)  # soak gates read the agents' status
        for namespace in w.namespaces.values():
            w.kube().request("POST", "/api/v1/namespaces",
                             body={"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": namespace}})  # fmt: skip
        names = ", ".join(w.namespaces.values())
        return (
            f"Kubernetes {state.version} at {state.info.server}, {state.nodes} kwok nodes; "
            f"namespaces {names}"
        )

    def agents(self) -> str:
        w = self.w
        for env in ENVS:
            extra = {"VAULT_TOKEN": w.vault_tokens[env]} if env in w.vault_tokens else {}
            # An empty keyring, as CI's: dev's rollback PRs need no opener's signature.
            extra["GNUPGHOME"] = str(w.actor("ci").gnupghome)
            proc = w.start_agent(env, extra_env=extra, trust_from=self.main)
            keys = f"SOPS_AGE_KEY_FILE={w.private.name}/{env}.agekey" + (
                " VAULT_TOKEN=<prod's token>" if env in w.vault_tokens else ""
            )
            w.narrator.command(
                f"{keys} promote agent --env {env} --trust-from {self.main[:12]} "
                "--kubeconfig cluster/kubeconfig "
                f"--listen 127.0.0.1:{w.ports[env]} &",
                f"(pid {proc.pid}, log {proc.log})",
            )
        w.check_key_isolation()
        took = w.wait_synced(ENVS, self.main)
        for env in ENVS:
            if not w.secret_matches(env, "db", "password", w.passwords[env]):
                raise DemoError(
                    f"Secret {w.namespaces[env]}/db does not hold the password set for {env}."
                )
        if not w.secret_matches("prod", "payments-api", VAULT_KEY, w.vault_value):
            raise DemoError(
                f"Secret {w.namespaces['prod']}/payments-api does not hold the value in OpenBao."
            )
        return (
            f"all three Synced at {self.main[:12]} after {took:.1f}s; the db Secrets and "
            "prod's payments-api (read from OpenBao) hold the values set (compared in memory)"
        )

    # --- the story -------------------------------------------------------------------------

    def ci_publish(self) -> str:
        before = self.main
        self.w.promote("set-image", "dev", f"{APP}={TAG}", actor="ci")
        self.main = self._moved(before, "set-image")
        return f"main {before[:8]} -> {self.main[:8]}: overlays/dev sets {APP} {TAG}"

    def synced(self, env: str) -> str:
        w = self.w
        took = w.wait_synced((env,), self.main)
        doc = rollout.wait_health(w, env, "Healthy", revision=self.main)
        w.narrator.say(
            f"{env} agent /status: revision {self.main[:12]}, {doc.get('sync')}, "
            f"health {doc.get('health')} (kwok reports the Pods Running and Ready)"
        )
        image = w.image(env, APP)
        if not image.split("@")[0].endswith(f":{TAG}"):  # prod pins its digest
            raise DemoError(
                f"the {env} agent reports Synced but Deployment {w.namespaces[env]}/{APP} runs "
                f"{image}, not {TAG}."
            )
        return f"Synced at {self.main[:12]} after {took:.1f}s; Deployment image {image}"

    def open_pr(self, env: str) -> str:
        source = {"staging": "dev", "prod": "staging"}[env]
        waited = rollout.wait_soaked(self.w, source)
        self.w.narrator.say(f"{env}'s soak gate: {source} Healthy {seed.DEMO_SOAK_S}s+ "
                            f"(waited {waited:.1f}s)")  # fmt: skip
        before = seed.pr_numbers(self.w.remote)
        self.w.promote("to", env, actor="dev1")
        new = seed.pr_numbers(self.w.remote) - before
        if len(new) != 1:
            raise DemoError(f"`promote to {env}` should open one PR in the remote; found {new}.")
        self.prs[env] = new.pop()
        return f"PR #{self.prs[env]} into {env} ({APP} -> {TAG}) recorded in the remote"

    def approve(self, env: str, who: str) -> str:
        number = self.prs[env]
        self.w.promote("approve", str(number), "--as", who, "--comment", "lgtm", actor=who)
        return f"{who} signed an approval of PR #{number}'s head with their own key"

    def merge(self, env: str, who: str) -> str:
        before = self.main
        self.w.promote("merge", str(self.prs[env]), actor=who)
        self.main = self._moved(before, f"merge of PR #{self.prs[env]}")
        return f"PR #{self.prs[env]} merged: main {before[:8]} -> {self.main[:8]}"

    def merge_refused(self) -> str:
        result = self.w.promote("merge", str(self.prs["prod"]), actor="rm1", expect=3)
        if seed.main_sha(self.w.remote) != self.main:
            raise DemoError("the refused merge moved main anyway.")
        said = (result.stderr.strip() or result.stdout.strip()).splitlines()
        return f"exit 3, main unchanged: {said[0] if said else '(no message)'}"

    def drift(self) -> str:
        return drift.revert_drift(self.w, APP)

    def status(self) -> str:
        w = self.w
        kube = ("--kubeconfig", str(w.kubeconfig))
        w.wait_synced(ENVS, self.main)  # every agent has seen the last merge (a pass may be due)
        doc = w.promote("status", *kube, "-o", "json", actor="dev1", show=False).json()
        row = next((r for r in doc.get("apps", []) if r.get("app") == APP), None)
        if row is None:
            raise DemoError(f"promote status shows no row for {APP}.")
        cells = row["environments"]
        wrong = [e for e in ENVS if (_tag(cells[e]["tag"]), cells[e]["sync"]) != (TAG, "Synced")]
        if wrong:
            raise DemoError(f"promote status: {APP} is not {TAG} Synced in {', '.join(wrong)}: "
                            f"{ {e: cells[e] for e in wrong} }")  # fmt: skip
        if self.show_views:
            w.promote("status", *kube, actor="dev1")
        health = ", ".join(f"{e} {cells[e]['health']}" for e in ENVS)
        if any(cells[e]["health"] != "Healthy" for e in ENVS):
            raise DemoError(f"promote status: not every environment is Healthy: {health}")
        return f"{APP} {TAG} Synced and Healthy in dev, staging and prod"

    def history(self) -> str:
        w = self.w
        doc = w.promote("history", "prod", "-o", "json", actor="dev1", show=False).json()
        entries = doc.get("entries") or []
        if not entries:
            raise DemoError("promote history prod lists nothing.")
        top = entries[0]
        changes = {(c["app"], _tag(c["to"])) for c in top.get("changes", [])}
        signed = {a["approver"] for a in top.get("approvals", []) if a["signature"] == "valid"}
        if (APP, TAG) not in changes or (top.get("pr") or {}).get("number") != self.prs["prod"]:
            raise DemoError(f"promote history prod: the newest entry is not PR "
                            f"#{self.prs['prod']} with {APP} {TAG}: {top}")  # fmt: skip
        if not {"rm1", "rm2"} <= signed:
            raise DemoError(f"promote history prod: valid approvals are {sorted(signed)}, "
                            "expected rm1 and rm2.")  # fmt: skip
        if self.show_views:
            w.promote("history", "prod", actor="dev1")
        return f"newest: PR #{self.prs['prod']} {APP} -> {TAG}, approved by rm1 and rm2 (verified)"

    def _moved(self, before: str, what: str) -> str:
        after = seed.main_sha(self.w.remote)
        if after == before:
            raise DemoError(f"the {what} did not move main (still {before[:12]}).")
        return after


def _tag(version: str | None) -> str | None:
    """The tag of ``TAG`` or ``TAG@sha256:...`` (prod's images are pinned)."""
    return version.split("@")[0] if version else version


def _check_no_plaintext(w: World) -> None:
    """No value and no private key in the tree about to be pushed (a canary check)."""
    needles = [v.encode() for v in w.passwords.values()] + [b"AGE-SECRET-KEY-"]
    for path in w.clone.rglob("*"):
        if ".git" in path.relative_to(w.clone).parts or not path.is_file():
            continue
        data = path.read_bytes()
        if any(n in data for n in needles):
            raise DemoError(f"{path.relative_to(w.clone)} holds a plaintext value or private key.")
