"""Settings: every flag has its env var, a documented default, and a one-line error for a bad value."""
from __future__ import annotations

import contextlib
import io
import re

import pytest

from job.cmd import UsageError, env_var, get_parser, parse
from job.deps import Deps
from job.main import main


def _flags(command: str) -> list[str]:
    parser = get_parser({})
    sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr,index]
    return [a.option_strings[0] for a in sub._actions if a.option_strings and a.option_strings[0].startswith("--")
            and a.dest != "help"]


@pytest.mark.parametrize("command", ["run", "backfill", "status", "plan"])
def test_every_flag_documents_its_env_var_and_default(command: str) -> None:
    help_text = get_parser({})._subparsers._group_actions[0].choices[command].format_help()  # type: ignore[union-attr,index]
    flat = re.sub(r"\s+", " ", help_text)
    for flag in _flags(command):
        if command == "backfill" and flag in ("--since", "--until"):
            continue  # per-invocation values, deliberately without an env var
        var = env_var(flag[2:])
        assert f"[env {var}; default:" in flat, f"{flag} lacks its env var {var} in --help"


ENV_CASES = [
    ("LOKI_EVENT_SYNC_LOKI_URL", "http://loki:3100", "loki_url", "http://loki:3100"),
    ("LOKI_EVENT_SYNC_STATE", "s3://bucket/key", "state", "s3://bucket/key"),
    ("LOKI_EVENT_SYNC_NAMESPACE", "ops", "namespace", "ops"),
    ("LOKI_EVENT_SYNC_LEASE_NAME", "other-lease", "lease_name", "other-lease"),
    ("LOKI_EVENT_SYNC_LEASE_DURATION", "30s", "lease_duration", 30.0),
    ("LOKI_EVENT_SYNC_CLUSTER", "prod-eu", "cluster", "prod-eu"),
    ("LOKI_EVENT_SYNC_FIELD_SELECTOR", "type=Warning", "field_selector", "type=Warning"),
    ("LOKI_EVENT_SYNC_EVENT_TTL", "2h", "event_ttl", 7200.0),
    ("LOKI_EVENT_SYNC_LABEL_STYLE", "seed", "label_style", "seed"),
    ("LOKI_EVENT_SYNC_LINE_FORMAT", "logfmt", "line_format", "logfmt"),
    ("LOKI_EVENT_SYNC_TENANT", "team-a", "tenant", "team-a"),
    ("LOKI_EVENT_SYNC_DRY_RUN", "true", "dry_run", True),
    ("LOKI_EVENT_SYNC_PAGE_SIZE", "100", "page_size", 100),
    ("LOKI_EVENT_SYNC_MAX_LINE_BYTES", "64KiB", "max_line_bytes", 65536),
    ("LOKI_EVENT_SYNC_BATCH_BYTES", "512KiB", "batch_bytes", 524288),
    ("LOKI_EVENT_SYNC_RETRY_BUDGET", "30s", "retry_budget", 30.0),
    ("LOKI_EVENT_SYNC_PUSH_TIMEOUT", "5s", "push_timeout", 5.0),
    ("LOKI_EVENT_SYNC_LOG_FORMAT", "text", "log_format", "text"),
    ("LOKI_EVENT_SYNC_STRUCTURED_METADATA", "1", "structured_metadata", True),
    ("LOKI_EVENT_SYNC_S3_ENDPOINT_URL", "http://minio:9000", "s3_endpoint_url", "http://minio:9000"),
    ("LOKI_EVENT_SYNC_PUSHGATEWAY_URL", "http://pgw:9091", "pushgateway_url", "http://pgw:9091"),
]


@pytest.mark.parametrize("var, value, attr, expected", ENV_CASES)
def test_env_var_sets_its_own_flag(var: str, value: str, attr: str, expected: object) -> None:
    env = {"LOKI_EVENT_SYNC_LOKI_URL": "http://loki:3100", var: value}
    assert getattr(parse(["run"], env), attr) == expected


def test_unprefixed_variables_are_not_settings() -> None:
    cfg = parse(["run", "--loki-url", "http://l"],
                {"NAMESPACE": "x", "SINCE": "1h", "STATE": "s3://b/k", "DRY_RUN": "1"})
    assert (cfg.namespace, cfg.since, cfg.state, cfg.dry_run) == ("", "", "", False)


def test_kubeconfig_keeps_its_ecosystem_variable() -> None:
    assert parse(["status"], {"KUBECONFIG": "/tmp/kc"}).kubeconfig == "/tmp/kc"


def test_flag_beats_env_var() -> None:
    cfg = parse(["run", "--cluster", "from-flag"],
                {"LOKI_EVENT_SYNC_LOKI_URL": "http://l", "LOKI_EVENT_SYNC_CLUSTER": "from-env"})
    assert cfg.cluster == "from-flag"


BAD = [
    ["run", "--loki-url", "loki:3100"],
    ["run", "--loki-url", "http://l", "--state", "redis://x"],
    ["run", "--loki-url", "http://l", "--state", "configmap://Bad_NS/x"],
    ["run", "--loki-url", "http://l", "--lease-duration", "soon"],
    ["run", "--loki-url", "http://l", "--event-ttl", "-1h"],
    ["run", "--loki-url", "http://l", "--page-size", "0"],
    ["run", "--loki-url", "http://l", "--label-style", "fancy"],
    ["run", "--loki-url", "http://l", "--line-format", "xml"],
    ["run", "--loki-url", "http://l", "--field-selector", "type~Warning"],
    ["run", "--loki-url", "http://l", "--include-namespaces", "(["],
    ["run", "--loki-url", "http://l", "--max-line-bytes", "big"],
    ["run", "--loki-url", "http://l", "--since", "yesterday"],
    ["run", "--loki-url", "http://l", "--namespace", "Not Valid"],
    ["run", "--loki-url", "http://l", "--lease-name", "UPPER"],
    ["run", "--loki-url", "http://l", "--pushgateway-url", "pgw"],
    ["run", "--loki-url", "http://l", "--s3-endpoint-url", "minio"],
    ["run", "--loki-url", "http://l", "--log-format", "yaml"],
    ["run", "--loki-url", "http://l", "--no-such-flag"],
    ["run"],  # no Loki URL and no --dry-run
    ["backfill", "--loki-url", "http://l"],  # no --since
    ["backfill", "--loki-url", "http://l", "--since", "1h", "--until", "2h"],
    ["status", "--output", "xml"],
    ["frobnicate"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) for a in BAD])
def test_invalid_values_exit_2_with_one_line(argv: list[str]) -> None:
    err = io.StringIO()
    assert main(argv, env={}, deps=Deps(stderr=err, stdout=io.StringIO())) == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_invalid_env_value_names_the_variable() -> None:
    with pytest.raises(UsageError, match="environment variable LOKI_EVENT_SYNC_PAGE_SIZE"):
        parse(["run"], {"LOKI_EVENT_SYNC_LOKI_URL": "http://l", "LOKI_EVENT_SYNC_PAGE_SIZE": "lots"})


def test_help_never_shows_a_password_from_the_environment() -> None:
    env = {"LOKI_EVENT_SYNC_LOKI_PASSWORD": "hunter2-secret", "LOKI_EVENT_SYNC_LOKI_URL": "http://u:urlpass-secret@loki"}
    text = get_parser(env)._subparsers._group_actions[0].choices["run"].format_help()  # type: ignore[union-attr,index]
    assert "hunter2-secret" not in text and "urlpass-secret" not in text


def test_bad_url_error_hides_its_password() -> None:
    err = io.StringIO()
    main(["run", "--loki-url", "ftp://u:pw-secret-1@loki"], env={}, deps=Deps(stderr=err))
    assert "pw-secret-1" not in err.getvalue() and "error:" in err.getvalue()


BAD_ENV = {"LOKI_EVENT_SYNC_RETRY_BUDGET": "bad", "LOKI_EVENT_SYNC_PAGE_SIZE": "lots",
           "LOKI_EVENT_SYNC_DRY_RUN": "maybe", "LOKI_EVENT_SYNC_LOKI_URL": "http://[::1"}


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["run", "--help"], ["status", "--help"],
                                  ["plan", "--help"]], ids=" ".join)
def test_help_and_version_never_fail_on_a_bad_environment_value(argv: list[str]) -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(out):
        parse(argv, BAD_ENV)
    assert done.value.code == 0 and ("loki-event-sync" in out.getvalue() or "usage:" in out.getvalue())


def test_a_bad_environment_value_fails_only_the_command_that_reads_it() -> None:
    env = {"LOKI_EVENT_SYNC_RETRY_BUDGET": "bad"}
    assert parse(["plan"], env).command == "plan"  # plan has no --retry-budget
    with pytest.raises(UsageError, match="environment variable LOKI_EVENT_SYNC_RETRY_BUDGET: 'bad' is not a"):
        parse(["run", "--dry-run"], env)
    with pytest.raises(UsageError, match="environment variable LOKI_EVENT_SYNC_DRY_RUN: 'maybe'"):
        parse(["run"], {"LOKI_EVENT_SYNC_DRY_RUN": "maybe"})
    # A flag given on the command line wins, so the bad value is never read.
    assert parse(["run", "--dry-run", "--retry-budget", "5s"], env).retry_budget == 5.0


def test_the_help_shows_an_environment_value_as_the_default_without_converting_it() -> None:
    text = get_parser({"LOKI_EVENT_SYNC_PAGE_SIZE": "250"})._subparsers._group_actions[0].choices["run"].format_help()  # type: ignore[union-attr,index]
    assert "default: 500" in re.sub(r"\s+", " ", text)  # the documented default, not the environment's
    assert parse(["run", "--dry-run"], {"LOKI_EVENT_SYNC_PAGE_SIZE": "250"}).page_size == 250
