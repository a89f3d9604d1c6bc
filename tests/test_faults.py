"""Faults on every side the job talks to: Loki, the Kubernetes API, S3.

Each test injects one fault and holds the job to the same contract: the right exit code, exactly one
error line that says what failed and what to do (never a traceback), a checkpoint that is unchanged
or advanced only to what Loki acknowledged, and a later normal run that catches up so every visible
(uid, count) pair is in Loki exactly once. The last tests repeat the faults with real-looking secrets
set and assert none of them reaches any output.
"""
from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from state import decode, encode
from tests.conftest import CM_PATH, LEASE, NAMESPACE, Harness, lease_object, legacy_event, now, put_install
from tests.kubeapi import KubeAPI
from tests.lokidouble import LOKI_VERSIONS, LokiDouble

NEXT_PAGE = r"^/api/v1/events\?.*continue="


# --- helpers ----------------------------------------------------------------------------------------


def assert_checkpoint_within_loki(h: Harness, data: bytes | None, *,
                                  rejected_uids: frozenset[str] = frozenset()) -> None:
    """The checkpoint claims nothing Loki did not acknowledge."""
    assert data is not None, "no checkpoint was saved"
    cp = decode(data, "test")
    shipped = set(h.shipped())
    claimed = {(uid, count) for uid, (count, _) in cp.ledger.items() if uid not in rejected_uids}
    assert claimed <= shipped, f"checkpoint claims unacknowledged pairs: {sorted(claimed - shipped)[:5]}"


def first_run(h: Harness, n: int = 20) -> bytes:
    """A successful run, so the faults below start from a real checkpoint; returns its bytes."""
    h.seed(n, prefix="first")
    assert h.run() == 0, h.stderr
    data = h.checkpoint_bytes()
    assert data is not None
    return data


def with_url(h: Harness, url: str, *extra: str, state: str | None = None) -> list[str]:
    args = h.args("run", *extra) if state is None else h.args("run", *extra, state=state)
    args[args.index("--loki-url") + 1] = url
    return args


def once(predicate: Callable[[str, str], bool], action: Callable[[], object]) -> Callable[[str, str], None]:
    """A kube.on_request hook that runs `action` on the first request matching `predicate`."""
    fired = False

    def hook(method: str, path: str) -> None:
        nonlocal fired
        if not fired and predicate(method, path):
            fired = True
            action()

    return hook


def is_events_list(method: str, path: str) -> bool:
    return method == "GET" and path.startswith("/api/v1/events?")


def is_next_page(method: str, path: str) -> bool:
    return is_events_list(method, path) and "continue=" in path


# --- Loki side ----------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_loki_refusing_connections_fails_with_exit_1_keeps_the_checkpoint_and_next_run_catches_up(
        h: Harness) -> None:
    before = first_run(h)
    h.seed(15)
    assert h.run(raw=with_url(h, "http://127.0.0.1:9")) == 1  # discard port: nothing listens
    msg = h.one_error()
    assert "cannot reach Loki at http://127.0.0.1:9/loki/api/v1/push" in msg
    assert "--retry-budget" in msg  # says why it stopped and what governs it
    assert h.checkpoint_bytes() == before
    assert h.run() == 0
    h.no_errors()
    h.assert_each_once()
    assert_checkpoint_within_loki(h, h.checkpoint_bytes())


@pytest.mark.timeout(30)
def test_loki_answering_after_the_push_timeout_is_retried_and_the_stored_copy_is_dropped_as_duplicate(
        h: Harness) -> None:
    first_run(h)
    h.seed(12)
    # The double stores the push, then answers after 4 s; the client gives up at 2 s and retries. The
    # 2 s are the retry's room to land on a loaded machine (a real socket timeout, not a clock).
    h.loki.delay_next(4.0)
    assert h.run("run", "--push-timeout", "2s") == 0, h.stderr
    h.no_errors()
    s = h.summary()
    assert s["retries"] == 1 and s["lines"] == 12
    assert h.loki.duplicate_entries == 12  # the retry was an exact duplicate Loki dropped
    assert any("ReadTimeout" in r["msg"] for r in h.logs() if r["level"] == "warning")
    h.assert_each_once()
    assert_checkpoint_within_loki(h, h.checkpoint_bytes())


@pytest.mark.timeout(30)
@pytest.mark.parametrize("status", [500, 503, 429])
def test_loki_5xx_or_429_a_few_times_then_204_is_retried_and_succeeds(h: Harness, status: int) -> None:
    first_run(h)
    h.seed(10)
    h.loki.fail_next(status, times=3, body="try again")  # 429 here without Retry-After: plain backoff
    # Three backoffs sleep up to 0.5 + 1 + 2 s on the injected clock: a budget that covers them.
    assert h.run("run", "--retry-budget", "10s") == 0, h.stderr
    h.no_errors()
    assert h.summary()["retries"] == 3
    h.assert_each_once()
    assert_checkpoint_within_loki(h, h.checkpoint_bytes())


@pytest.mark.timeout(30)
def test_loki_500_beyond_the_retry_budget_fails_and_keeps_the_checkpoint(h: Harness) -> None:
    before = first_run(h)
    h.seed(10)
    # The first backoff (0.25-0.5 s) already exceeds a 200 ms budget: exactly one attempt.
    h.loki.fail_next(500, times=1, body="internal server error")
    assert h.run("run", "--retry-budget", "200ms") == 1
    msg = h.one_error()
    assert f"Loki at {h.loki.url}/loki/api/v1/push answered 500" in msg
    assert "gave up after 1 attempts within --retry-budget" in msg
    assert h.checkpoint_bytes() == before
    assert h.run() == 0
    h.assert_each_once()


@pytest.mark.timeout(30)
def test_loki_429_with_retry_after_is_honoured_and_succeeds(h: Harness) -> None:
    first_run(h)
    h.seed(10)
    h.loki.fail_next(429, times=2, retry_after="2")
    assert h.run("run", "--retry-budget", "10s") == 0, h.stderr
    h.no_errors()
    assert h.summary()["retries"] == 2
    assert h.clock.sleeps == [2.0, 2.0]  # what it waited, read from the injected clock
    waits = [r["msg"] for r in h.logs() if r["level"] == "warning" and "answered 429" in r["msg"]]
    assert len(waits) == 2 and all(w.endswith("in 2.0s") for w in waits), waits  # Retry-After, not backoff
    h.assert_each_once()
    assert_checkpoint_within_loki(h, h.checkpoint_bytes())


@pytest.mark.timeout(30)
def test_loki_429_with_retry_after_beyond_the_budget_gives_up_at_once(h: Harness) -> None:
    before = first_run(h)
    h.seed(10)
    h.loki.fail_next(429, times=1, retry_after="600")
    assert h.run() == 1
    msg = h.one_error()
    assert "answered 429" in msg and "--retry-budget" in msg
    assert h.loki.pushes == 2  # the first run's push and this one's single attempt: no ten-minute wait
    assert h.checkpoint_bytes() == before
    assert h.run() == 0
    h.assert_each_once()


@pytest.mark.timeout(30)
def test_loki_partial_400_counts_rejects_saves_the_rest_and_never_reships(h: Harness) -> None:
    first_run(h)
    poison = [h.kube.put_event(legacy_event(f"bad-{i}.1", message="poison" if i == 1 else "fine"))
              for i in range(6)]
    bad_uid = frozenset({poison[1]["metadata"]["uid"]})
    h.loki.reject_matching("poison")
    assert h.run() == 0, h.stderr
    h.no_errors()
    assert h.summary()["rejected"] == 1
    assert any("Loki rejected 1 of" in r["msg"] and "reject_matching" in r["msg"]
               for r in h.logs() if r["level"] == "warning")
    h.assert_each_once(rejected_uids=bad_uid)
    # The checkpoint covers the rejected entry on purpose (it must not block the checkpoint forever),
    # and everything else it claims is in Loki.
    assert_checkpoint_within_loki(h, h.checkpoint_bytes(), rejected_uids=bad_uid)
    assert h.run() == 0
    assert h.summary()["lines"] == 0
    h.assert_each_once(rejected_uids=bad_uid)


@pytest.mark.timeout(30)
def test_loki_413_splits_the_batch_and_everything_lands_once(h: Harness) -> None:
    first_run(h)
    h.seed(30)
    h.loki.fail_next(413, body="request entity too large")
    assert h.run() == 0, h.stderr
    h.no_errors()
    s = h.summary()
    assert s["pushes"] == 3 and s["lines"] == 30  # the refused request, then its two halves
    assert h.loki.duplicate_entries == 0
    h.assert_each_once()
    assert_checkpoint_within_loki(h, h.checkpoint_bytes())


BOTH_SPELLINGS = [LOKI_VERSIONS[0], LOKI_VERSIONS[-1]]  # before and after grafana/loki #19206
GATEWAY_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
               "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("version", BOTH_SPELLINGS)
@pytest.mark.parametrize("kind", ["rate_limited", "per_stream_rate_limited", "stream_limit"])
def test_loki_429_in_each_versions_words_waits_out_retry_after_and_lands(
        kube: KubeAPI, tmp_path: Path, version: str, kind: str) -> None:
    with LokiDouble(loki_version=version) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(5)
        loki.answer_next(kind, times=2, retry_after="3")
        assert h.run("run", "--retry-budget", "10s") == 0, h.stderr
        h.no_errors()
        assert h.clock.sleeps == [3.0, 3.0] and h.summary()["retries"] == 2
        waits = [r["msg"] for r in h.logs() if r["level"] == "warning" and "answered 429" in r["msg"]]
        assert len(waits) == 2 and "limit" in waits[0].lower()  # Loki's reason, in its own words
        h.assert_each_once()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("version", BOTH_SPELLINGS)
def test_loki_413_for_its_own_body_limit_splits_until_each_part_fits(
        kube: KubeAPI, tmp_path: Path, version: str) -> None:
    with LokiDouble(loki_version=version, max_body_bytes=4000) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(30)
        assert h.run() == 0, h.stderr
        h.no_errors()
        s = h.summary()
        assert s["split_requests"] > 0 and s["pushes"] == 1 + s["split_requests"] and s["lines"] == 30
        assert loki.duplicate_entries == 0 and h.checkpoint_bytes() is not None
        h.assert_each_once()


@pytest.mark.timeout(30)
def test_loki_5xx_with_a_gateways_html_page_is_retried_and_logged_by_its_title(h: Harness) -> None:
    first_run(h)
    h.seed(4)
    h.loki.fail_next(502, times=2, body=GATEWAY_502, content_type="text/html")
    assert h.run() == 0, h.stderr
    h.no_errors()
    waits = [r["msg"] for r in h.logs() if r["level"] == "warning" and "answered 502" in r["msg"]]
    assert len(waits) == 2 and all("an HTML page (502 Bad Gateway)" in w and "<" not in w for w in waits)
    h.assert_each_once()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("version", ["3.1", LOKI_VERSIONS[-1]])  # block_ingestion_until came in 3.2
def test_loki_blocking_the_tenants_ingestion_with_its_260_fails_the_run_unsaved(
        kube: KubeAPI, tmp_path: Path, version: str) -> None:
    with LokiDouble(loki_version=version) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(3)
        loki.answer_next("blocked")
        assert h.run() == 1
        msg = h.one_error()
        assert "blocks ingestion for this tenant until 2030-01-01T00:00:00Z" in msg and "login page" not in msg
        assert h.checkpoint_bytes() is None
        assert h.run() == 0 and len(loki.entries()) == 3


@pytest.mark.timeout(30)
def test_loki_401_for_a_missing_tenant_names_the_url_without_credentials_and_mentions_tenant(
        kube: KubeAPI, tmp_path: Path) -> None:
    secret = "url-pw-Q7v2LmX9"
    with LokiDouble(tenant_required=True) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(5, prefix="first")
        assert h.run("run", "--tenant", "acme") == 0, h.stderr
        before = h.checkpoint_bytes()
        h.seed(7)
        url = loki.url.replace("http://", f"http://bob:{secret}@")
        assert h.run(raw=with_url(h, url)) == 1
        msg = h.one_error()
        assert f"Loki at {loki.url}/loki/api/v1/push refused the push with 401" in msg
        assert "--tenant" in msg
        assert secret not in h.stdout + h.stderr and "bob:" not in msg
        assert loki.pushes == 2  # not retried
        assert h.checkpoint_bytes() == before
        assert h.run("run", "--tenant", "acme") == 0
        h.assert_each_once()
        assert loki.tenants_seen == {"acme"}


@pytest.mark.timeout(30)
def test_loki_answering_slowly_within_the_push_timeout_succeeds_without_retries(h: Harness) -> None:
    first_run(h)
    h.seed(30)
    h.loki.delay_next(0.3, times=4)
    # A timeout far above the delay: "slow" must not turn into "timed out" on a loaded machine.
    assert h.run("run", "--batch-bytes", "2KiB", "--push-timeout", "10s") == 0, h.stderr
    h.no_errors()
    s = h.summary()
    assert s["retries"] == 0 and s["pushes"] >= 4
    assert h.loki.duplicate_entries == 0
    h.assert_each_once()
    assert_checkpoint_within_loki(h, h.checkpoint_bytes())


# --- Kubernetes API side --------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_api_410_in_the_middle_of_a_list_restarts_it_and_ships_each_event_once(h: Harness) -> None:
    first_run(h)
    h.seed(160)
    h.kube.expire_continue_after(2)
    assert h.run() == 0, h.stderr
    h.no_errors()
    assert h.summary()["pages"] > 4  # two pages, then the whole list again
    assert any("expired" in r["msg"] for r in h.logs() if r["level"] == "warning")
    h.assert_each_once()
    assert_checkpoint_within_loki(h, h.checkpoint_bytes())


@pytest.mark.timeout(30)
def test_api_500_on_one_page_of_the_list_fails_keeps_the_checkpoint_and_next_run_catches_up(
        h: Harness) -> None:
    before = first_run(h)
    h.seed(120)
    pushes = h.loki.pushes
    requests_before = len(h.kube.requests)
    h.kube.fail("GET", NEXT_PAGE, 500, message="etcdserver: request timed out")
    assert h.run() == 1
    msg = h.one_error()
    assert "listing events failed: HTTP 500: etcdserver: request timed out" in msg
    # urllib3 inside the kubernetes client retries only 413/429/503 with Retry-After: a 500 is
    # not retried behind the job's back, so the failing page was requested exactly once.
    pages = [p for m, p in h.kube.requests[requests_before:] if is_next_page(m, p)]
    assert len(pages) == 1
    assert h.loki.pushes == pushes  # the first page was batched, never pushed
    assert h.checkpoint_bytes() == before
    assert h.run() == 0
    h.no_errors()
    h.assert_each_once()
    assert_checkpoint_within_loki(h, h.checkpoint_bytes())


@pytest.mark.timeout(30)
def test_api_403_on_listing_events_names_the_missing_permission(h: Harness) -> None:
    before = first_run(h)
    h.seed(10)
    pushes = h.loki.pushes
    h.kube.forbid("list", "events")
    assert h.run() == 2  # a permission to grant is a configuration error
    msg = h.one_error()
    assert "listing events failed: HTTP 403" in msg
    assert 'cannot list resource "events"' in msg and "at the cluster scope" in msg
    assert "apply the ClusterRole" in msg and "--event-namespaces" in msg
    assert h.loki.pushes == pushes
    assert h.checkpoint_bytes() == before
    spec = h.kube.existing("leases", NAMESPACE, LEASE)["spec"]
    assert spec["holderIdentity"] == ""  # released even though the run failed
    h.kube.permit("list", "events")
    assert h.run() == 0
    h.assert_each_once()


@pytest.mark.timeout(30)
def test_api_409_on_the_checkpoint_save_fails_without_overwriting_and_next_run_catches_up(
        h: Harness) -> None:
    before = first_run(h)
    h.seed(8)
    h.kube.fail("PATCH", CM_PATH, 409)
    assert h.run() == 1
    msg = h.one_error()
    assert "configmap://loki-event-sync/loki-event-sync-checkpoint" in msg
    assert "changed by someone else" in msg and "not overwriting it" in msg
    assert h.checkpoint_bytes() == before
    assert h.run() == 0
    assert h.loki.duplicate_entries == 8  # the pushed-but-unsaved run re-sent identical lines
    h.assert_each_once()
    assert_checkpoint_within_loki(h, h.checkpoint_bytes())


@pytest.mark.timeout(30)
def test_lease_stolen_during_the_run_fails_with_lost_and_never_saves_the_checkpoint(h: Harness) -> None:
    before = first_run(h)
    h.seed(10)
    steal = lambda: h.put_lease("thief", now())  # noqa: E731
    h.kube.on_request = once(is_events_list, steal)
    assert h.run() == 1
    h.kube.on_request = None
    msg = h.one_error()
    assert "lost" in msg and f"Lease {NAMESPACE}/{LEASE}" in msg
    assert h.checkpoint_bytes() == before
    assert h.kube.existing("leases", NAMESPACE, LEASE)["spec"]["holderIdentity"] == "thief"  # not released
    h.put_lease("", now())  # the thief finishes and releases it
    assert h.run() == 0
    h.assert_each_once()
    assert_checkpoint_within_loki(h, h.checkpoint_bytes())


@pytest.mark.timeout(30)
def test_token_file_rotated_mid_run_fails_that_run_cleanly_and_the_next_run_uses_the_new_token(
        loki: LokiDouble, tmp_path: Path) -> None:
    """Honest behaviour of the kubernetes client with a kubeconfig `tokenFile`.

    KubeConfigLoader._load_user_token reads tokenFile once, when the client is built, and its
    refresh_api_key_hook reloads only when an `expiry` is known (exec plugins, OIDC), never for a
    token file. So when the old token stops working mid-run, the rest of that run is refused with
    401. The job fails that run cleanly (exit 1, one error, checkpoint unchanged) and the next run,
    which builds a new client, reads the new token and catches up. In a cluster this does not
    arise: load_incluster_config re-reads the projected token every minute, and kube-apiserver
    keeps accepting the old token until it expires, long after the kubelet rotated it.
    """
    with KubeAPI(token="t1") as kube:
        put_install(kube)
        token = tmp_path / "token"
        token.write_text("t1")  # as a projected token: no trailing newline (see the next test)
        h = Harness(kube, loki, tmp_path)
        kube.write_kubeconfig(h.kubeconfig, namespace=NAMESPACE, token_file=token)
        before = first_run(h)
        h.seed(120)  # three pages

        def rotate() -> None:
            token.write_text("t2")
            kube.token = "t2"

        kube.on_request = once(is_next_page, rotate)  # before the second page is served
        assert h.run() == 1
        kube.on_request = None
        msg = h.one_error()
        assert "listing events failed: HTTP 401" in msg and "check the kubeconfig" in msg
        assert "t1" not in msg and "t2" not in msg
        assert h.checkpoint_bytes() == before
        # The Lease could not be released with the stale token either; it is left to expire.
        assert kube.existing("leases", NAMESPACE, LEASE)["spec"]["holderIdentity"] != ""
        assert any("could not release" in r["msg"] for r in h.logs() if r["level"] == "warning")
        kube.put_object("leases", lease_object("", now()))  # skip the 15 s wait for it to expire
        assert h.run() == 0, h.stderr
        h.no_errors()
        h.assert_each_once()
        assert_checkpoint_within_loki(h, h.checkpoint_bytes())


@pytest.mark.timeout(30)
def test_kubeconfig_token_file_with_a_trailing_newline_never_prints_the_token(
        loki: LokiDouble, tmp_path: Path) -> None:
    """`echo "$TOKEN" > file` leaves a newline. kubectl trims it; the kubernetes Python client reads
    tokenFile verbatim and puts "Bearer <token>\\n" in the header, which http.client refuses with a
    ValueError quoting the whole header value. Whatever the run does, the token must not be printed."""
    secret = "kube-SECRET-eyJhbGciOiJSUzI1NiJ9.9f8e7d6c"
    with KubeAPI(token=secret) as kube:
        put_install(kube)
        token = tmp_path / "token"
        token.write_text(secret + "\n")
        h = Harness(kube, loki, tmp_path)
        kube.write_kubeconfig(h.kubeconfig, namespace=NAMESPACE, token_file=token)
        h.seed(3)
        code = h.run()
        assert secret not in h.stdout + h.stderr, "the Kubernetes bearer token was printed:\n" + h.stderr
        if code == 1:
            h.one_error()
        else:
            assert code == 0
            h.assert_each_once()


# --- S3 side (moto in server mode) ------------------------------------------------------------------


AWS_SECRET = "aws-SECRET-wJalrXUtnFEMI9K7MDENG"


@dataclass
class S3:
    client: Any  # a boto3 S3 client on moto
    bucket: str

    def put(self, key: str, data: bytes, bucket: str | None = None) -> None:
        self.client.put_object(Bucket=bucket or self.bucket, Key=key, Body=data)

    def get(self, key: str, bucket: str | None = None) -> bytes:
        return self.client.get_object(Bucket=bucket or self.bucket, Key=key)["Body"].read()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, moto_url: str) -> S3:
    """A fresh bucket on moto. boto3 reads its credentials from os.environ, not from
    main(env=...), so they are set with monkeypatch for the job to find."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTING")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")  # no profile of the machine's user interferes
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    # boto3's default session caches the credentials it resolved first; start from a fresh one so
    # the job's client reads the variables above.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    client = boto3.client("s3", endpoint_url=moto_url)
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3(client, bucket)


@pytest.mark.timeout(30)
def test_s3_412_when_the_object_changed_between_load_and_save_fails_without_overwriting(
        h: Harness, s3: S3, moto_url: str) -> None:
    state = f"s3://{s3.bucket}/sync/checkpoint"
    h.seed(10, prefix="first")
    assert h.run("run", "--s3-endpoint-url", moto_url, state=state) == 0, h.stderr
    h.seed(10)
    # Someone else writes a valid checkpoint after the job loaded its copy (it loads before listing).
    theirs = decode(s3.get("sync/checkpoint"), "s3")
    theirs.last_run = {"written_by": "someone-else"}
    their_bytes = encode(theirs)
    h.kube.on_request = once(is_events_list,
                             lambda: s3.put("sync/checkpoint", their_bytes))
    assert h.run("run", "--s3-endpoint-url", moto_url, state=state) == 1
    h.kube.on_request = None
    msg = h.one_error()
    assert f"checkpoint {state} was changed by someone else" in msg and "not overwriting it" in msg
    assert s3.get("sync/checkpoint") == their_bytes
    assert h.run("run", "--s3-endpoint-url", moto_url, state=state) == 0, h.stderr
    h.assert_each_once()
    assert_checkpoint_within_loki(h, s3.get("sync/checkpoint"))


@pytest.mark.timeout(30)
def test_s3_missing_bucket_says_nosuchbucket_and_to_create_it(h: Harness, s3: S3, moto_url: str) -> None:
    missing = f"missing-{uuid.uuid4().hex[:10]}"
    state = f"s3://{missing}/checkpoint"
    h.seed(6)
    assert h.run("run", "--s3-endpoint-url", moto_url, state=state) == 1
    msg = h.one_error()
    assert state in msg and "NoSuchBucket" in msg and "create the bucket" in msg
    assert h.loki.pushes == 0  # the checkpoint is read before anything is pushed
    s3.client.create_bucket(Bucket=missing)
    assert h.run("run", "--s3-endpoint-url", moto_url, state=state) == 0, h.stderr
    h.assert_each_once()
    data = s3.get("checkpoint", bucket=missing)
    assert_checkpoint_within_loki(h, data)


@pytest.fixture
def moto_auth(moto_url: str) -> Iterator[Callable[[bool], None]]:
    """Switch moto's IAM enforcement on and off (POST /moto-api/reset-auth); always off afterwards."""
    import requests

    def enforce(on: bool) -> None:
        requests.post(f"{moto_url}/moto-api/reset-auth", data=b"0" if on else b"inf", timeout=5).raise_for_status()

    yield enforce
    enforce(False)


@pytest.mark.timeout(30)
def test_s3_access_denied_on_save_names_the_permissions_and_keeps_the_checkpoint(
        h: Harness, s3: S3, moto_url: str, moto_auth: Callable[[bool], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    key = "sync/checkpoint"
    state = f"s3://{s3.bucket}/{key}"
    h.seed(10, prefix="first")
    assert h.run("run", "--s3-endpoint-url", moto_url, state=state) == 0, h.stderr
    before = s3.get(key)
    # A user that may read the checkpoint but not write it.
    iam = boto3.client("iam", endpoint_url=moto_url)
    user = f"job-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="read-only", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{s3.bucket}/*"}],
    }))
    creds = iam.create_access_key(UserName=user)["AccessKey"]
    h.seed(10)
    with monkeypatch.context() as m:
        m.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
        m.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
        m.setattr(boto3, "DEFAULT_SESSION", None)  # else the cached admin credentials are reused
        moto_auth(True)
        try:
            code = h.run("run", "--s3-endpoint-url", moto_url, state=state)
        finally:
            moto_auth(False)
    assert code == 1
    msg = h.one_error()
    assert f"cannot write checkpoint {state}: AccessDenied" in msg
    assert "allow s3:GetObject and s3:PutObject" in msg
    assert creds["SecretAccessKey"] not in h.stdout + h.stderr
    assert s3.get(key) == before
    assert h.run("run", "--s3-endpoint-url", moto_url, state=state) == 0, h.stderr
    assert h.loki.duplicate_entries == 10  # re-sent after the failed save, dropped by Loki
    h.assert_each_once()
    assert_checkpoint_within_loki(h, s3.get(key))


# --- secrets under every fault ----------------------------------------------------------------------


PASSWORD = "pw-Zx81qLm3vR7tY2"
BEARER = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJsb2tpLXN5bmMifQ.c2VjcmV0LXNpZ25hdHVyZQ"
URL_PASSWORD = "urlpw-9fK2mQ7pL4xW1"
TENANT = "tenant-7c1e0b5a93d2"


# name -> (extra flags, state or None for the ConfigMap, the exit code the job gives under that fault)
FAULTS: dict[str, tuple[tuple[str, ...], str | None, int]] = {
    "loki refuses connections": (("--retry-budget", "200ms"), None, 1),
    "loki times out, then the retry lands": (("--push-timeout", "2s"), None, 0),  # answered after 4 s
    "loki 500 beyond the budget": (("--retry-budget", "200ms"), None, 1),
    "loki 429 retry-after beyond the budget": ((), None, 1),
    "loki partial 400": ((), None, 0),
    "loki 413 on a single entry": (("--batch-bytes", "1"), None, 1),
    "loki 401": ((), None, 1),
    "loki drops the connection, then the retry lands": ((), None, 0),
    "loki redirects to another host": ((), None, 1),
    "loki is a login page answering 200": ((), None, 1),
    "loki refuses the whole request (400)": ((), None, 1),
    "loki echoes the request headers in a 403": ((), None, 1),
    "api 500 on a page": ((), None, 1),
    "api 403 on list": ((), None, 2),  # a permission to grant: a configuration error (issue 11)
    "api 409 on save": ((), None, 1),
    "lease stolen": ((), None, 1),
    "s3 missing bucket": ((), "s3://no-such-bucket-x/cp", 1),
    "s3 412": ((), "s3://{bucket}/cp", 1),
}


def _arrange(name: str, h: Harness, s3: S3) -> None:
    loki, kube = h.loki, h.kube
    h.seed(3, prefix=f"x{uuid.uuid4().hex[:6]}")  # something new to push every time
    if name.startswith("loki times out"):
        loki.delay_next(4.0)
    elif name == "loki 500 beyond the budget":
        loki.fail_next(500, body="upstream error")
    elif name == "loki 429 retry-after beyond the budget":
        loki.fail_next(429, retry_after="600")
    elif name == "loki partial 400":
        kube.put_event(legacy_event(f"poison-{uuid.uuid4().hex[:6]}.1", message="poison"))
        loki.reject_matching("poison")
    elif name == "loki 413 on a single entry":
        loki.fail_next(413, body="too large")
    elif name == "loki 401":
        loki.fail_next(401, body="Unauthorized")
    elif name.startswith("loki drops the connection"):
        loki.drop_connection_next()
    elif name == "loki redirects to another host":
        loki.fail_next(307, body="", location="http://127.0.0.1:9/loki/api/v1/push?session=abc")
    elif name == "loki is a login page answering 200":
        loki.fail_next(200, body="<html>Sign in</html>", content_type="text/html")
    elif name == "loki refuses the whole request (400)":
        loki.fail_next(400, body="loghttp.PushRequest: ReadObject: expect { or n")
    elif name == "loki echoes the request headers in a 403":
        basic = base64.b64encode(f"svc:{PASSWORD}".encode()).decode()
        loki.fail_next(403, body=f"denied; got Authorization: Basic {basic}, X-Scope-OrgID: {TENANT}, "
                                 f"token {BEARER}")
    elif name == "api 500 on a page":
        h.seed(60, prefix=f"p{uuid.uuid4().hex[:6]}")
        kube.fail("GET", NEXT_PAGE, 500)
    elif name == "api 403 on list":
        kube.forbid("list", "events")
    elif name == "api 409 on save":
        kube.fail("PATCH", CM_PATH, 409)
    elif name == "lease stolen":
        kube.on_request = once(is_events_list, lambda: kube.put_object("leases", lease_object("thief", now())))
    elif name == "s3 412":
        kube.on_request = once(is_events_list, lambda: s3.put("cp", b"theirs"))


def _clear(h: Harness) -> None:
    h.kube.on_request = None
    h.kube.permit("list", "events")
    h.put_lease("", now())
    h.loki.reset()  # reject patterns must not leak into the next fault (stored entries go too)


@pytest.mark.timeout(60)
def test_no_credential_reaches_any_output_under_any_fault(
        h: Harness, s3: S3, moto_url: str, tmp_path: Path) -> None:
    token = tmp_path / "loki-token"
    token.write_text(BEARER + "\n")
    # TENANT is set as in cronjob.yaml's Secret; whether it may be printed is the next test's question.
    env = {"LOKI_EVENT_SYNC_LOKI_USERNAME": "svc", "LOKI_EVENT_SYNC_LOKI_PASSWORD": PASSWORD,
           "LOKI_EVENT_SYNC_LOKI_BEARER_TOKEN_FILE": str(token), "LOKI_EVENT_SYNC_TENANT": TENANT}
    secrets = {"LOKI_EVENT_SYNC_LOKI_PASSWORD": PASSWORD, "bearer token": BEARER, "URL password": URL_PASSWORD,
               "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
               "base64 of svc:password": base64.b64encode(f"svc:{PASSWORD}".encode()).decode()}
    h.seed(5, prefix="first")
    url = h.loki.url.replace("http://", f"http://svc:{URL_PASSWORD}@")
    assert h.run(raw=with_url(h, url), env=env) == 0, h.stderr
    codes: dict[str, int] = {}
    leaks: list[str] = []
    for name, (extra, state, _) in FAULTS.items():
        target = f"http://svc:{URL_PASSWORD}@127.0.0.1:9" if name == "loki refuses connections" else url
        argv = with_url(h, target, *extra, *(("--s3-endpoint-url", moto_url) if state else ()),
                        state=state.format(bucket=s3.bucket) if state else None)
        _arrange(name, h, s3)
        try:
            codes[name] = h.run(raw=argv, env=env)
        finally:
            _clear(h)
        output = h.stdout + h.stderr
        leaks += [f"{what} in the output of '{name}'" for what, value in secrets.items() if value in output]
        if codes[name] == 1:
            h.one_error()
    assert not leaks, leaks
    assert codes == {name: code for name, (_, _, code) in FAULTS.items()}


@pytest.mark.timeout(30)
def test_tenant_from_the_loki_secret_never_reaches_any_output(h: Harness) -> None:
    """cronjob.yaml delivers TENANT in the same Secret as LOKI_PASSWORD, so it is held to the same rule."""
    env = {"LOKI_EVENT_SYNC_TENANT": TENANT}
    h.seed(4)
    outputs = []
    assert h.run(env=env) == 0
    outputs.append(h.stdout + h.stderr)
    h.seed(2, prefix="more")
    h.loki.fail_next(401, body="Unauthorized")
    assert h.run(env=env) == 1
    outputs.append(h.stdout + h.stderr)
    assert h.loki.tenants_seen == {TENANT}  # it was used ...
    leaked = [i for i, out in enumerate(outputs) if TENANT in out]
    assert not leaked, f"TENANT value printed in run(s) {leaked}: " + next(
        line for line in outputs[leaked[0]].splitlines() if TENANT in line)[:300]
