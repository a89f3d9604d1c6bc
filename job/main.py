"""Entry point: parse the settings, set up logging, run one command, map the outcome to an exit code."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Mapping, Sequence

from job import __version__
from job.cmd import Config, UsageError, parse, redact_url
from job.failure import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from job.logs import Redactor, setup

if TYPE_CHECKING:
    from job.deps import Deps
    from job.summary import Summary

log = logging.getLogger("job")



def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
         deps: Deps | None = None) -> int:
    """Run one command; tests pass argv, env and deps (clock, streams) instead of the process's."""
    from job.deps import Deps

    env = os.environ if env is None else env
    d = deps or Deps()
    try:
        cfg = parse(argv, env)
    except UsageError as exc:
        print(f"error: {Redactor([])(str(exc))}", file=d.stderr)
        return EXIT_USAGE
    redact = Redactor(cfg.secrets())
    d.redactor = redact
    setup(cfg.log_format, cfg.log_level, redact, d.stderr)
    try:
        return _dispatch(cfg, d, redact)
    except UsageError as exc:  # a setting found wrong only once the command ran (a schedule, a dump)
        print(f"error: {redact(str(exc))}", file=d.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        log.error("interrupted; the checkpoint was not saved")
        return EXIT_FAILED
    except Exception as exc:  # the last line of defence: one line, never a traceback with secrets
        _log_failure(exc)
        return EXIT_FAILED


def _log_failure(exc: Exception) -> None:
    from job.failure import RunFailed
    from job.kube import KubeError
    from job.loki import PushError
    from state import StoreError

    if isinstance(exc, (KubeError, PushError, RunFailed, StoreError)):
        log.error("run failed: %s", exc)
    else:
        log.error("run failed with an unexpected %s: %s", type(exc).__name__, exc)
        log.debug("details", exc_info=True)


def _dispatch(cfg: Config, d: Deps, redact: Redactor) -> int:
    if cfg.command == "plan":
        from job import plan

        return plan.main(cfg, d.stdout, d.clock.now(), d)
    if cfg.command == "manifest":
        from job import manifest

        return manifest.main(cfg, d)
    if cfg.command == "status":
        from job.kube import KubeError
        from job.status import render, status
        from state import StoreError

        try:
            info = status(cfg, d)
        except (KubeError, StoreError) as exc:  # a missing store, namespace or object: exit 1, one line
            log.error("status failed: %s", exc)
            return EXIT_FAILED
        if cfg.output == "json":
            d.stdout.write(json.dumps(info, indent=2) + "\n")
        else:
            d.stdout.write(render(info))
        return EXIT_OK
    log.info("loki-event-sync %s starting %s", __version__, cfg.command,
             extra={"fields": {"config": redact(json.dumps(_public(cfg), default=str))}})
    from job import sync
    from job.summary import Summary

    summary = Summary()
    try:
        code = sync.run(cfg, d, summary)
    except UsageError as exc:  # found only once the run reads its input, e.g. a --from-file of Pods
        log.error("%s", exc)
        code = EXIT_USAGE
    except Exception as exc:
        _log_failure(exc)
        # A permission to grant (kube.KubeForbidden) is a configuration error: exit 2, not a failed run.
        code = int(getattr(exc, "exit_code", EXIT_FAILED))
    _push_metrics(cfg, summary, code)  # a failed run is exactly what the metrics must show
    # Every run ends with its counts, a failed one too: they say how far it got.
    log.info("%s %s: %s", cfg.command, "completed" if code == EXIT_OK else "failed",
             " ".join(f"{k}={v}" for k, v in asdict(summary).items()), extra={"fields": {"summary": asdict(summary)}})
    return code


def _public(cfg: Config) -> dict[str, object]:
    out = asdict(cfg)
    out["loki_password"] = "***" if cfg.loki_password else ""
    # Tenants are secrets whatever their length (a Redactor cannot hide a two-letter value everywhere).
    out["tenant"] = "***" if cfg.tenant else ""
    out["tenant_map"] = [f"{pattern.pattern}=***" for pattern, _ in cfg.tenant_map]
    for key in ("loki_url", "pushgateway_url", "s3_endpoint_url"):
        out[key] = redact_url(out[key])
    out["filters"] = {k: v.pattern for k, v in out["filters"].items() if v is not None}
    return out


def _push_metrics(cfg: Config, summary: Summary, code: int) -> None:
    if not cfg.pushgateway_url or cfg.dry_run:
        return
    from job import metrics

    metrics.push(cfg, summary, code)
