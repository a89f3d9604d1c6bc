"""Entry point: parse the settings, set up logging, run one command, map its ending to an exit code.

Whatever ends a command is mapped to one row of job/failure.py CAUSES, which gives the exit code. A
run or backfill ends with exactly one line, built in a ``finally`` whatever ended it (SIGTERM
included): its outcome and counts, which on a failure is also the line that says what went wrong,
and the same figures go to the Pushgateway.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Mapping, Sequence

from job import __version__
from job.cmd import Config, UsageError, parse, redact_url
from job.failure import CAUSES, EXIT_OK, EXIT_USAGE, cause_of
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
    if cfg.command in ("run", "backfill"):
        return _sync(cfg, d, redact)
    try:
        return _dispatch(cfg, d)
    except UsageError as exc:  # a setting found wrong only once the command ran (a schedule, a manifest)
        print(f"error: {redact(str(exc))}", file=d.stderr)
        return EXIT_USAGE
    except BaseException as exc:  # KeyboardInterrupt too: one line, never a traceback with secrets
        cause = cause_of(exc)
        log.error("%s failed: %s", cfg.command, _reason(exc, cause))
        return CAUSES[cause].code


def _reason(exc: BaseException, cause: str) -> str:
    """One line saying what is wrong; the details of an unexpected error only at DEBUG."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGTERM or Ctrl-C); the checkpoint was not saved"
    if cause == "unexpected":
        log.debug("details", exc_info=exc)
        return f"an unexpected {type(exc).__name__}: {exc}"
    return str(exc)


def _dispatch(cfg: Config, d: Deps) -> int:
    if cfg.command == "plan":
        from job import plan

        return plan.main(cfg, d.stdout, d.clock.now(), d)
    if cfg.command == "manifest":
        from job import manifest

        return manifest.main(cfg, d)
    from job.status import render, status

    info = status(cfg, d)
    d.stdout.write(json.dumps(info, indent=2) + "\n" if cfg.output == "json" else render(info))
    return EXIT_OK


def _sync(cfg: Config, d: Deps, redact: Redactor) -> int:
    """A run or backfill, and its one closing line and metrics push, however it ends."""
    from job import sync
    from job.summary import Summary

    log.info("loki-event-sync %s starting %s", __version__, cfg.command,
             extra={"fields": {"config": redact(json.dumps(_public(cfg), default=str))}})
    started = d.clock.monotonic()
    s = Summary()
    error: BaseException | None = None
    try:
        sync.run(cfg, d, s)
    except BaseException as exc:  # SIGTERM arrives as KeyboardInterrupt (job/__main__.py): report it too
        error = exc
    finally:
        cause = "ok" if error is None else cause_of(error)
        s.cause, s.outcome, s.exit_code = cause, CAUSES[cause].outcome, CAUSES[cause].code
        s.duration_s = round(d.clock.monotonic() - started, 3)
        s.cpu_s = round(d.clock.cpu(), 3)
        _end(cfg, s, error, d.clock.now().timestamp())
    if error is not None and not isinstance(error, (Exception, KeyboardInterrupt)):
        raise error  # SystemExit and the like are not the run's to swallow
    return s.exit_code


def _end(cfg: Config, s: Summary, error: BaseException | None, now_s: float) -> None:
    figures = s.figures()
    verb, level = {"ok": ("completed", logging.INFO), "skipped": ("skipped", logging.INFO)}.get(
        s.outcome, ("failed", logging.ERROR))
    why = "" if error is None else f"{_reason(error, s.cause)}; "
    log.log(level, "%s %s: %s%s", cfg.command, verb, why, " ".join(f"{k}={v}" for k, v in figures.items()),
            extra={"fields": {"summary": figures}})
    if cfg.pushgateway_url and not cfg.dry_run:
        from job import metrics

        metrics.push(cfg, s, now_s)  # a failed run is exactly what the metrics must show


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
