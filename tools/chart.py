"""The Helm chart (charts/loki-event-sync) through the Helm library itself (helm-python-sdk), offline.

    python tools/chart.py render [-f VALUES]... [--namespace NS]   # print the manifests
    python tools/chart.py lint [-f VALUES]...                      # helm lint --strict, per values file
    python tools/chart.py package --version X.Y.Z --destination DIR  # the .tgz; prints its path
    python tools/chart.py push ARCHIVE oci://ghcr.io/OWNER/charts  # prints the pushed digest

No helm binary, no network for the first three: CI renders and lints with exactly the library the
release packages and pushes with. push logs in with HELM_REGISTRY_USERNAME / HELM_REGISTRY_PASSWORD
when they are set (the release workflow's GITHUB_TOKEN); the password is never printed.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "loki-event-sync"
RELEASE = NAMESPACE = "loki-event-sync"


class ChartError(Exception):
    """Helm refused the chart or the values; the message is Helm's."""


def _helm() -> Any:
    try:
        import helm_python
    except ImportError:
        raise ChartError("helm_python not installed: pip install -r requirements-dev.txt (helm-python-sdk)") from None
    return helm_python


@contextlib.contextmanager
def _refusals() -> Iterator[Any]:
    """The Helm library, whose errors become ChartError with Helm's own message."""
    helm = _helm()
    try:
        yield helm
    except helm.HelmError as exc:
        raise ChartError(str(exc).strip()) from None


def load_values(paths: list[str]) -> dict[str, Any]:
    """Values files merged in order, as `helm -f a -f b` does for maps (later wins, key by key)."""
    merged: dict[str, Any] = {}
    for path in paths:
        _merge(merged, yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    return merged


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE, name: str = RELEASE,
           chart: Path = CHART, **options: Any) -> str:
    """`helm template NAME CHART -n NAMESPACE`: every rendered manifest, in template order, no NOTES."""
    with _refusals() as helm, helm.Chart.load(str(chart)) as loaded:
        out = loaded.render(values or {}, name=name, namespace=namespace, **options)
    parts = [(path, text.strip()) for path, text in sorted(out.items()) if not path.endswith("NOTES.txt")]
    return "".join(f"---\n# Source: {path}\n{text}\n" for path, text in parts if text)


def lint(values: dict[str, Any] | None = None, *, chart: Path = CHART) -> list[str]:
    """`helm lint --strict`: the findings that fail it (warnings and errors), as lines."""
    with _refusals() as helm:
        report = helm.lint(str(chart), values, strict=True, namespace=NAMESPACE)
    found = [f"{m['path']}: {m['error']}" for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
    return found + list(report.get("errors") or [])


def package(version: str, destination: Path, *, chart: Path = CHART) -> str:
    """The chart archive with this version as chart version and appVersion (the image's)."""
    destination.mkdir(parents=True, exist_ok=True)
    with _refusals() as helm:
        return str(helm.package(str(chart), destination=str(destination), version=version, app_version=version))


def push(archive: str, remote: str) -> str:
    """Push to an oci:// repository root and return the digest of what the registry now holds."""
    host = remote.removeprefix("oci://").split("/", 1)[0]
    with _refusals() as helm, helm.Chart.load(archive) as loaded:
        ref = f"{remote.rstrip('/')}/{loaded.name}:{loaded.version}"
    with _refusals() as helm, helm.RegistryClient() as client:
        user, password = os.environ.get("HELM_REGISTRY_USERNAME"), os.environ.get("HELM_REGISTRY_PASSWORD")
        if user and password:
            client.login(host, user, password)
        client.push(archive, remote)
        return str(client.resolve(ref)["digest"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("render", "lint"):
        s = sub.add_parser(name)
        s.add_argument("-f", "--values", action="append", default=[], help="a values file (repeatable)")
        s.add_argument("--namespace", default=NAMESPACE)
    pk = sub.add_parser("package")
    pk.add_argument("--version", required=True)
    pk.add_argument("--destination", default="build")
    ps = sub.add_parser("push")
    ps.add_argument("archive")
    ps.add_argument("remote")
    args = p.parse_args(argv)
    try:
        if args.command == "render":
            sys.stdout.write(render(load_values(args.values), namespace=args.namespace))
        elif args.command == "lint":
            findings = lint(load_values(args.values))
            for line in findings:
                print(f"error: {line}", file=sys.stderr)
            return 1 if findings else 0
        elif args.command == "package":
            print(package(args.version, Path(args.destination)))
        else:
            print(push(args.archive, args.remote))
    except (ChartError, OSError) as exc:
        # Helm lists schema violations one per "- at '/key': ..." line under a header: keep those.
        found = [ln.strip()[2:] for ln in str(exc).splitlines() if ln.strip().startswith("- at ")]
        print(f"error: {'; '.join(found) if found else exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
