"""`python -m job manifest backfill`: a ready-to-apply backfill Job, derived from the CronJob manifest.

`kubectl create job --from=cronjob/...` copies the jobTemplate verbatim and cannot change the args,
so a backfill needs its own Job. Deriving it from cronjob.yaml keeps the image, settings, security
context and resources in step. The window is resolved to absolute RFC3339 times here, so the Job
means the same window whenever it is applied and however often its pod is retried.
"""
from __future__ import annotations

import copy
import datetime as dt
from typing import TYPE_CHECKING, Any

from job.cmd import Config, resolve_time

if TYPE_CHECKING:
    from job.deps import Deps

NAME_MAX = 63  # a Job name becomes the job-name label value of its pods, which is limited to 63
APP_LABEL = "app.kubernetes.io/name"
BACKFILL_LABEL = "loki-event-sync/backfill"


class ManifestError(Exception):
    """The CronJob manifest is missing or unusable; the message says which file and why."""


def main(cfg: Config, deps: Deps) -> int:
    now = deps.clock.now().astimezone(dt.timezone.utc).replace(microsecond=0)
    try:
        cronjob = load_cronjob(cfg.manifest_file)
        job = backfill_job(cronjob, cfg.since, cfg.until, now)
    except ManifestError as exc:
        print(f"error: {exc}", file=deps.stderr)
        return 2
    import yaml

    window = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"][1:])
    deps.stdout.write(f"# Backfill Job derived from {cfg.manifest_file} at {_rfc3339(now)}: {window}\n"
                      "# Apply with: kubectl apply -f -\n"
                      "# If a scheduled run holds the Lease, the backfill fails and the Job retries it\n"
                      "# (backoffLimit); the window is absolute, so a retry means the same thing.\n")
    deps.stdout.write(yaml.safe_dump(job, sort_keys=False, default_flow_style=False))
    return 0


def load_cronjob(path: str) -> dict[str, Any]:
    # PyYAML is not in requirements.txt, but the kubernetes client requires it, so it is always there.
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.safe_load_all(f))
    except OSError as exc:
        raise ManifestError(f"cannot read --manifest-file {path}: {exc.strerror}; "
                            "run from the repository root or pass --manifest-file cronjob.yaml") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"--manifest-file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "CronJob":
            return doc
    raise ManifestError(f"--manifest-file {path} holds no CronJob (kind: CronJob)")


def backfill_job(cronjob: dict[str, Any], since: str, until: str, now: dt.datetime) -> dict[str, Any]:
    meta = cronjob.get("metadata") or {}
    name = str(meta.get("name") or "loki-event-sync")
    try:
        spec = copy.deepcopy(cronjob["spec"]["jobTemplate"]["spec"])
        containers = spec["template"]["spec"]["containers"]
    except (KeyError, TypeError):
        raise ManifestError(f"CronJob {name} has no spec.jobTemplate.spec.template.spec.containers") from None
    start = resolve_time(since, now)
    window = ["--since", _rfc3339(start)]
    if until:
        end = resolve_time(until, now)
        if end <= start:
            raise ManifestError(f"--until {until} is not later than --since {since}")
        window += ["--until", _rfc3339(end)]
    container = next((c for c in containers if c.get("name") == name), containers[0])
    container["args"] = ["backfill", *window, *_keep_flags(container.get("args") or [])]
    labels = {APP_LABEL: "loki-event-sync", BACKFILL_LABEL: "true"}
    template_meta = spec["template"].setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
    suffix = f"-backfill-{now:%Y%m%d%H%M}"
    job_meta: dict[str, Any] = {"name": name[: NAME_MAX - len(suffix)].rstrip("-.") + suffix}
    if meta.get("namespace"):
        job_meta["namespace"] = meta["namespace"]
    job_meta["labels"] = {**((cronjob["spec"]["jobTemplate"].get("metadata") or {}).get("labels") or {}), **labels}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": spec}


def _keep_flags(args: list[str]) -> list[str]:
    """The CronJob's extra flags after `run` (e.g. --cluster x), minus its own --since/--until."""
    if not args or args[0] != "run":
        return []
    kept: list[str] = []
    rest = iter(args[1:])
    for arg in rest:
        if arg in ("--since", "--until"):
            next(rest, None)
        elif not arg.startswith(("--since=", "--until=")):
            kept.append(arg)
    return kept


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
