"""Pushing options end to end: auth and tenancy, line formats, truncation, structured metadata, filters."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Harness, legacy_event, now, series_event
from tests.kubeapi import KubeAPI
from tests.lokidouble import LokiDouble


def _run_against(h: Harness, loki: LokiDouble, *extra: str, env: dict[str, str] | None = None) -> int:
    args = h.args("run", *extra)
    args[args.index("--loki-url") + 1] = loki.url
    return h.run(raw=args, env=env)


def test_basic_auth_and_tenant_reach_a_gateway_that_demands_them(h: Harness) -> None:
    h.kube.put_event(legacy_event("a.1"))
    with LokiDouble(basic_auth=("bob", "s3cret-pw"), tenant_required=True) as gateway:
        assert _run_against(h, gateway, "--tenant", "team-a") == 1  # no credentials: 401
        assert "401" in h.stderr and "--loki-username" in h.stderr
        env = {"LOKI_EVENT_SYNC_LOKI_USERNAME": "bob", "LOKI_EVENT_SYNC_LOKI_PASSWORD": "s3cret-pw"}
        assert _run_against(h, gateway, "--tenant", "team-a", env=env) == 0
        assert len(gateway.entries()) == 1 and gateway.tenants_seen == {"team-a"}
        assert "s3cret-pw" not in h.stderr and "team-a" not in h.stderr


def test_bearer_token_file_is_read_for_each_push(h: Harness, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    h.kube.put_event(legacy_event("a.1"))
    with LokiDouble(bearer_token="second-token") as gateway:
        assert _run_against(h, gateway, "--loki-bearer-token-file", str(token)) == 1
        token.write_text("second-token\n")  # a projected token rotated between runs
        assert _run_against(h, gateway, "--loki-bearer-token-file", str(token)) == 0
        assert len(gateway.entries()) == 1


def test_insecure_tls_is_announced_loudly(h: Harness) -> None:
    assert h.run("run", "--insecure-skip-tls-verify") == 0
    assert any(r["level"] == "warning" and "TLS verification of Loki is OFF" in r["msg"] for r in h.logs())


def test_logfmt_lines_carry_the_same_fields(h: Harness) -> None:
    h.kube.put_event(legacy_event("a.1", message='said "hi" = ok', count=3))
    assert h.run("run", "--line-format", "logfmt") == 0
    (entry,) = h.loki.entries()
    assert entry.line.startswith("type=Normal reason=Started kind=Pod namespace=default name=a")
    assert 'message="said \\"hi\\" = ok"' in entry.line and " count=3 new=3 " in entry.line


def test_a_line_over_the_limit_is_truncated_with_a_marker_not_dropped(h: Harness) -> None:
    h.kube.put_event(legacy_event("big.1", message="x" * 5000 + "é" * 100))
    assert h.run("run", "--max-line-bytes", "2048") == 0
    (entry,) = h.loki.entries()
    line = json.loads(entry.line)
    assert len(entry.line.encode()) <= 2048 and "[truncated " in line["message"]
    assert h.summary()["truncated"] == 1 and h.summary()["rejected"] == 0


def test_structured_metadata_holds_name_uid_reason_and_node(h: Harness) -> None:
    e = h.kube.put_event(legacy_event("a.1"))
    assert h.run("run", "--structured-metadata") == 0
    (entry,) = h.loki.entries()
    assert entry.metadata == {"name": "a", "uid": e["metadata"]["uid"], "reason": "Started", "node": "node-1",
                              "api_version": "v1"}


def test_client_side_filters_include_and_exclude_by_regex(h: Harness) -> None:
    h.kube.put_event(legacy_event("a.1", ns="kube-system", type_="Warning"))
    h.kube.put_event(legacy_event("b.1", ns="shop", type_="Warning"))
    h.kube.put_event(legacy_event("c.1", ns="shop", type_="Normal", reason="Pulled"))
    assert h.run("run", "--exclude-namespaces", "kube-.*", "--include-types", "Warning|Normal",
                 "--exclude-reasons", "Pulled") == 0
    assert [json.loads(e.line)["name"] for e in h.loki.entries()] == ["b"]
    assert h.summary()["filtered"] == 2


def test_the_json_line_of_the_seed_example_is_stable_to_the_byte() -> None:
    from job.events import decode_page
    from job.lines import Formatter

    doc = json.loads((Path(__file__).resolve().parent.parent / "examples" / "events.json").read_text())
    page = decode_page(json.dumps({"items": doc["items"][:1]}).encode())
    (e, t_ns), = page.events
    fmt = Formatter(label_style="default", line_format="json", cluster="", max_line_bytes=261120,
                    structured_metadata=False)
    assert t_ns == 1602492665 * 10**9  # lastTimestamp 2020-10-12T08:51:05Z
    assert fmt.line(e, 61) == (
        '{"type":"Warning","reason":"Unhealthy","kind":"Pod","namespace":"kube-system",'
        '"name":"kubernetes-dashboard-556b9ff8f8-gf6lg","fieldPath":"spec.containers{kubernetes-dashboard}",'
        '"message":"Liveness probe failed: Get https://172.20.1.96:8443/: net/http: request canceled '
        '(Client.Timeout exceeded while awaiting headers)","component":"kubelet","host":"node2",'
        '"firstTimestamp":"2020-09-23T07:22:15Z","lastTimestamp":"2020-10-12T08:51:05Z","count":61,"new":61,'
        '"event":"kubernetes-dashboard-556b9ff8f8-gf6lg.163758b70d2070c1","uid":"270a4ca9-e24c-4a40-b7e2-784352fd51ac",'
        '"apiVersion":"v1","objectUID":"4f22e027-6a03-4ec1-8ce9-83850dd3d431"}'
    )


# --- what counts as an acknowledgement (issue 9) ---------------------------------------------------


@pytest.mark.parametrize("status", [307, 308])
def test_a_redirect_to_another_host_fails_naming_only_that_host_and_nothing_reaches_it(
        h: Harness, status: int) -> None:
    h.seed(3)
    with LokiDouble(tenant_required=True) as elsewhere:
        target = f"{elsewhere.url}/loki/api/v1/push?sig=token-in-query-Zq81"
        h.loki.fail_next(status, body="", location=target)
        env = {"LOKI_EVENT_SYNC_LOKI_USERNAME": "bob", "LOKI_EVENT_SYNC_LOKI_PASSWORD": "pw-redirect-9x"}
        assert h.run("run", "--tenant", "team-a", env=env) == 1
        msg = h.one_error()
        assert f"answered {status}, a redirect to {elsewhere.url}" in msg and "--loki-url" in msg
        assert "token-in-query" not in h.stderr + h.stdout
        assert elsewhere.pushes == 0 and elsewhere.tenants_seen == set()  # credentials and tenant stayed home
    assert h.checkpoint_bytes() is None and h.clock.sleeps == []  # not retried, nothing saved


def test_a_200_with_a_login_page_is_not_an_acknowledgement(h: Harness) -> None:
    h.seed(4)
    h.loki.fail_next(200, body="<html><body>Sign in to continue</body></html>", content_type="text/html")
    assert h.run() == 1
    msg = h.one_error()
    assert "answered 200 with a text/html instead of 204 No Content" in msg and "login page" in msg
    assert h.checkpoint_bytes() is None
    assert h.run() == 0  # the real Loki answers now: everything lands, once
    assert len(h.loki.entries()) == 4 and h.loki.duplicate_entries == 0


def test_a_2xx_with_an_empty_body_still_counts_as_an_acknowledgement(h: Harness) -> None:
    h.seed(2)
    h.loki.fail_next(200, body="")  # a proxy that turns 204 into 200 but adds nothing
    assert h.run() == 0  # the double stored nothing for that push, but the client cannot know
    assert h.checkpoint_bytes() is not None


# --- entry rejections vs request rejections (issue 9) ------------------------------------------------


# (grouped counts and Loki's own line limit: tests/test_lokianswers.py)


def test_structured_metadata_on_a_loki_that_disallows_it_fails_the_run_with_lokis_reason(
        kube: KubeAPI, tmp_path: Path) -> None:
    with LokiDouble(allow_structured_metadata=False) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(5)
        assert h.run("run", "--structured-metadata") == 1
        msg = h.one_error()
        assert "refused the whole request (400)" in msg
        assert "includes structured metadata, but this feature is disallowed" in msg
        assert "turn off --structured-metadata" in msg and "\n" not in msg
        assert h.checkpoint_bytes() is None and h.clock.sleeps == []
        assert h.run() == 0 and len(loki.entries()) == 5  # without it, everything lands


def test_a_malformed_request_400_fails_the_run_and_saves_nothing(h: Harness) -> None:
    h.seed(3)
    h.loki.fail_next(400, body="loghttp.PushRequest.Streams: ReadArray: expect [ or n, but found {")
    assert h.run() == 1
    msg = h.one_error()
    assert "refused the whole request (400): loghttp.PushRequest.Streams: ReadArray" in msg
    assert h.checkpoint_bytes() is None


def test_a_run_in_which_loki_accepted_nothing_fails_and_saves_nothing(h: Harness) -> None:
    h.seed(4, ns="default")
    h.loki.reject_matching("")  # every line: Loki refuses each entry, one by one
    assert h.run() == 1
    msg = h.one_error()
    assert "accepted none of the 4 entries it was sent" in msg and "reject_matching" in msg
    assert "user 'fake'" not in msg and h.checkpoint_bytes() is None


# --- failures retrying cannot fix fail at once (issue 9) ---------------------------------------------


def _self_signed(tmp: Path) -> tuple[str, str]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loki-double")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            # Python 3.13's default VERIFY_X509_STRICT wants these on a CA certificate.
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "loki.crt", tmp / "loki.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def test_an_untrusted_tls_certificate_fails_at_once_as_a_certificate_problem(
        kube: KubeAPI, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with LokiDouble(tls=(cert, key)) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(3)
        assert h.run("run", "--retry-budget", "2m") == 1
        msg = h.one_error()
        assert "certificate verify failed" in msg and "a certificate problem" in msg and "--loki-ca-file" in msg
        assert h.clock.sleeps == [] and h.summary()["retries"] == 0  # not retried for the budget
        assert h.run("run", "--loki-ca-file", cert) == 0, h.stderr  # trusting its CA is the fix
        assert len(loki.entries()) == 3


def test_a_404_on_the_push_path_fails_at_once_saying_the_url_is_wrong(h: Harness) -> None:
    h.seed(2)
    args = h.args("run")
    args[args.index("--loki-url") + 1] = h.loki.url + "/wrong/prefix"
    assert h.run(raw=args) == 1
    msg = h.one_error()
    assert "answered 404: there is no push API at this URL" in msg and "--loki-url" in msg
    assert h.clock.sleeps == []


# --- --loki-url forms (issue 11) ------------------------------------------------------------------


@pytest.mark.parametrize("suffix, form", [("", "/loki/api/v1/push appended to the base URL"),
                                          ("/", "/loki/api/v1/push appended to the base URL"),
                                          ("/loki/api/v1/push", "the full push URL given"),
                                          ("/loki/api/v1/push/", "the full push URL given")])
def test_loki_url_takes_the_base_or_the_full_push_url_and_says_which(h: Harness, suffix: str, form: str) -> None:
    h.seed(3)
    args = h.args("run")
    args[args.index("--loki-url") + 1] = h.loki.url + suffix
    assert h.run(raw=args) == 0, h.stderr
    assert len(h.loki.entries()) == 3
    assert f"pushing to {h.loki.url}/loki/api/v1/push ({form})" in [r["msg"] for r in h.logs()]


# --- settings that would fail mid-run are exit 2 at parse time, showing no secret (issue 9) ----------


def _usage(argv: list[str], env: dict[str, str] | None = None) -> str:
    import io

    from job.deps import Deps
    from job.main import main

    err = io.StringIO()
    assert main(argv, env=env or {}, deps=Deps(stderr=err, stdout=io.StringIO())) == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err.getvalue(), err.getvalue()
    return lines[0]


BAD_LOKI_SETTINGS = {
    "raw @ in the URL password": (["--loki-url", "http://svc:pa@ss-Kq3@loki:3100"], {}, "http://loki:3100", "ss-Kq3"),
    "raw / in the URL password": (["--loki-url", "http://svc:pa/ss-Kq3@loki:3100"], {}, "http://loki:3100", "ss-Kq3"),
    "bad IPv6 URL as a flag": (["--loki-url", "http://[::1"], {}, "Invalid IPv6 URL", ""),
    "bad IPv6 URL from the environment": ([], {"LOKI_EVENT_SYNC_LOKI_URL": "http://[::1"},
                                          "LOKI_EVENT_SYNC_LOKI_URL", ""),
    "non-latin-1 tenant": (["--loki-url", "http://l", "--tenant", "tëam-€"], {}, "not a valid Loki tenant ID", "€"),
    "tenant with a newline": (["--loki-url", "http://l"], {"LOKI_EVENT_SYNC_TENANT": "team\nX-Evil: 1"},
                              "LOKI_EVENT_SYNC_TENANT", "X-Evil"),
    "non-latin-1 password": (["--loki-url", "http://l", "--loki-username", "u"],
                             {"LOKI_EVENT_SYNC_LOKI_PASSWORD": "pässwörd-€-Kq3"}, "latin-1", "Kq3"),
    "non-latin-1 password in the URL": (["--loki-url", "http://u:p%E2%82%AC-Kq3@loki"], {}, "latin-1", "Kq3"),
    "missing --loki-ca-file": (["--loki-url", "https://l", "--loki-ca-file", "/no/such/ca.pem"], {},
                               "/no/such/ca.pem", ""),
    "Pushgateway URL with a space": (["--loki-url", "http://l", "--pushgateway-url", "http://pgw:9091/a b"], {},
                                     "space", ""),
    "tenant map without a tenant": (["--loki-url", "http://l", "--tenant-map", "secret-tenant-q1"], {}, "--tenant-map",
                                    "secret-tenant-q1"),
}


@pytest.mark.parametrize("argv, env, says, secret", BAD_LOKI_SETTINGS.values(), ids=list(BAD_LOKI_SETTINGS))
def test_bad_loki_settings_exit_2_with_one_line_that_shows_no_secret(
        argv: list[str], env: dict[str, str], says: str, secret: str) -> None:
    line = _usage(["run", *argv], env)
    assert says in line
    assert not secret or secret not in line


def test_a_bearer_token_file_with_a_line_break_inside_is_exit_2(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc-secret-1\nX-Injected: yes\n")
    line = _usage(["run", "--loki-url", "http://l", "--loki-bearer-token-file", str(token)])
    assert "line break" in line and "abc-secret-1" not in line


# --- secrets in every encoding that can come back (issue 9) ------------------------------------------


def test_basic_auth_echoed_back_by_a_gateway_is_redacted_in_every_encoding(h: Harness) -> None:
    import base64

    h.seed(2)
    user, password = "svc", "pw-echo-7Hq2"
    b64 = base64.b64encode(f"{user}:{password}".encode()).decode()
    h.loki.fail_next(403, body=f"denied. Request headers: Authorization: Basic {b64}; X-Scope-OrgID: t7")
    assert h.run("run", "--tenant", "t7", env={"LOKI_EVENT_SYNC_LOKI_USERNAME": user,
                                                "LOKI_EVENT_SYNC_LOKI_PASSWORD": password}) == 1
    out = h.stdout + h.stderr
    assert b64 not in out and password not in out and "X-Scope-OrgID: t7" not in out
    assert "refused the push with 403" in h.one_error()


def test_a_tenant_is_never_printed_whatever_its_length(kube: KubeAPI, tmp_path: Path) -> None:
    with LokiDouble(tenant_required=True) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(2)
        assert h.run("run", "--tenant", "ab") == 0
        start = next(json.loads(r["config"]) for r in h.logs() if "config" in r)
        assert start["tenant"] == "***" and loki.tenants_seen == {"ab"}
        h.seed(2, prefix="more")
        loki.refuse_tenant("ab", 403)  # the gateway's answer names the tenant
        assert h.run("run", "--tenant", "ab") == 1
        msg = h.one_error()
        assert "refused the push with 403" in msg and "'ab'" not in msg and "'***'" in msg


def test_a_bearer_token_rotated_mid_run_is_redacted_too(h: Harness, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("token-before-Hx81\n")
    rotated = "token-after-rotation-Zm42"

    def rotate(method: str, path: str) -> None:
        if path.startswith("/api/v1/events"):
            token.write_text(rotated + "\n")  # the projected token is renewed while the run lists

    h.kube.on_request = rotate
    h.seed(2)
    h.loki.fail_next(401, body=f"token {rotated} has expired")  # a gateway that quotes what it got
    assert h.run("run", "--loki-bearer-token-file", str(token)) == 1
    assert rotated not in h.stdout + h.stderr and "refused the push with 401: token *** has expired" in h.one_error()


# --- SIGTERM while Loki makes the job wait (issue 9) ---------------------------------------------------


def test_sigterm_while_waiting_out_a_long_retry_after_ends_the_run_and_releases_the_lease(h: Harness) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import NAMESPACE

    h.seed(4)
    # Loki is down and asks for 5 minutes; the budget allows the wait, so without an interruptible
    # retry the job would sit out 300 s (and a pod's 30 s grace) before noticing the signal.
    h.loki.fail_next(503, times=50, retry_after="300", body="overloaded")
    args = h.args("run", "--retry-budget", "10m")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "job", *args], cwd=h.tmp, env=dict(os.environ, PYTHONPATH=str(root)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while h.loki.pushes == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert h.loki.pushes == 1, "the job never reached Loki"
        time.sleep(0.3)  # well into the 300 s wait
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)  # a hang guard, far below the 300 s Retry-After
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and "interrupted" in err and "Traceback" not in err, err
    assert h.loki.pushes == 1  # no retry after the signal
    lease = h.kube.get_object("leases", NAMESPACE, "loki-event-sync")
    assert lease is not None and lease["spec"]["holderIdentity"] == ""  # released on the way out
    assert h.checkpoint_bytes() is None


# --- tenant routing (issue 11) ----------------------------------------------------------------------


def _by_tenant(loki: LokiDouble, tenant: str) -> set[str]:
    return {json.loads(e.line)["namespace"] for e in loki.entries(tenant)}


def test_tenant_map_sends_each_namespace_to_its_tenant_in_its_own_requests(kube: KubeAPI, tmp_path: Path) -> None:
    with LokiDouble(tenant_required=True) as loki:
        h = Harness(kube, loki, tmp_path)
        for ns in ("team-a-web", "team-a-db", "shop", "kube-system"):
            h.seed(2, prefix=ns, ns=ns)
        assert h.run("run", "--tenant", "ops", "--tenant-map", r"team-a-.*=team-a,sh.{1\,3}=shop,team-a-db=never") == 0
        assert _by_tenant(loki, "team-a") == {"team-a-web", "team-a-db"}  # first match wins
        assert _by_tenant(loki, "shop") == {"shop"}  # \, is the comma of the quantifier
        assert _by_tenant(loki, "ops") == {"kube-system"}  # the rest: the default tenant
        assert loki.tenants_seen == {"team-a", "shop", "ops"} and loki.pushes == 3  # one request per tenant
        out = h.stdout + h.stderr
        assert "team-a" not in out.replace("team-a-web", "").replace("team-a-db", "").replace("team-a-.*", "")
        start = next(json.loads(r["config"]) for r in h.logs() if "config" in r)
        # The patterns are shown, the tenants not (and the Redactor hides a tenant even inside a pattern).
        assert start["tenant_map"][1] == "sh.{1,3}=***" and all(t.endswith("=***") for t in start["tenant_map"])


def test_a_403_for_one_tenant_fails_unsaved_and_the_next_run_resends_with_loki_dropping_the_duplicates(
        kube: KubeAPI, tmp_path: Path) -> None:
    with LokiDouble(tenant_required=True) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(3, prefix="a", ns="a-ok")
        h.seed(2, prefix="z", ns="z-refused")
        loki.refuse_tenant("t-refused", 403)
        flags = ("--tenant", "t-ok", "--tenant-map", "z-.*=t-refused")
        assert h.run("run", *flags) == 1
        msg = h.one_error()
        assert "refused the push with 403" in msg and "--tenant-map" in msg and "t-refused" not in msg
        assert h.checkpoint_bytes() is None
        assert len(loki.entries("t-ok")) == 3  # the other tenant's batch was already accepted
        loki.refuse_tenant("t-refused", 0)  # the credential may write there now
        assert h.run("run", *flags) == 0, h.stderr
        assert loki.duplicate_entries == 3  # re-sent to t-ok, dropped by Loki as duplicates
        assert len(loki.entries("t-ok")) == 3 and len(loki.entries("t-refused")) == 2


def _namespace(h: Harness, name: str, labels: dict[str, str]) -> None:
    h.kube.put_object("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                     "metadata": {"name": name, "labels": labels}})


def test_tenant_label_on_a_namespace_names_its_tenant_and_beats_the_map(kube: KubeAPI, tmp_path: Path) -> None:
    with LokiDouble(tenant_required=True) as loki:
        h = Harness(kube, loki, tmp_path)
        _namespace(h, "web", {"example.com/loki-tenant": "team-web"})
        _namespace(h, "mapped", {"example.com/loki-tenant": "team-label"})
        _namespace(h, "plain", {"app": "x"})
        for ns in ("web", "mapped", "plain"):
            h.seed(2, prefix=ns, ns=ns)
        assert h.run("run", "--tenant", "ops", "--tenant-map", "mapped=team-map",
                     "--tenant-label", "example.com/loki-tenant") == 0, h.stderr
        assert _by_tenant(loki, "team-web") == {"web"}
        assert _by_tenant(loki, "team-label") == {"mapped"}  # the label beats --tenant-map
        assert _by_tenant(loki, "ops") == {"plain"} and "team-map" not in loki.tenants_seen


def test_tenant_label_without_list_on_namespaces_names_the_missing_permission(kube: KubeAPI, tmp_path: Path) -> None:
    with LokiDouble(tenant_required=True) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(2)
        kube.forbid("list", "namespaces")
        assert h.run("run", "--tenant", "ops", "--tenant-label", "example.com/loki-tenant") == 1
        msg = h.one_error()
        assert "namespaces" in msg and "list" in msg and loki.pushes == 0
        assert h.checkpoint_bytes() is None


# --- protobuf + snappy, Loki's native push format (issue 13) ----------------------------------------


def test_protobuf_push_lands_the_same_entries_as_json(tmp_path: Path) -> None:
    stored = {}
    t = now()  # one event time for both passes: a second ticking over between them would change the lines
    for push_format in ("json", "protobuf"):
        with KubeAPI() as api, LokiDouble() as loki:
            for kind, name in (("leases", "loki-event-sync"), ("configmaps", "loki-event-sync-checkpoint")):
                api.put_object(kind, {"metadata": {"name": name, "namespace": "loki-event-sync"}})
            (tmp_path / push_format).mkdir()
            h = Harness(api, loki, tmp_path / push_format)
            for i in range(5):
                e = legacy_event(f"e-{i}.{i}", ns=f"ns-{i % 2}", message=f"naïve ünïcode {i} \"quoted\"",
                                 uid=f"00000000-0000-4000-8000-00000000000{i}", last=t)
                api.put_event(e)
            api.put_event(series_event("s.1", count=3, uid="00000000-0000-4000-8000-0000000000aa", last=t))
            assert h.run("run", "--push-format", push_format, "--structured-metadata") == 0, h.stderr
            stored[push_format] = [(e.labels, e.ts, e.line, e.metadata) for e in loki.entries()]
            assert loki.media_types == ["application/json" if push_format == "json" else "application/x-protobuf"]
    assert len(stored["json"]) == 6 and stored["protobuf"] == stored["json"]


def test_the_push_format_comparison_runs_and_reports_both_formats() -> None:
    from bench.push_format import measure

    res = measure(200, 64 * 1024, structured_metadata=True)
    assert set(res) == {"json", "protobuf"}
    for r in res.values():  # figures exist and compression did something; no speed is asserted
        assert 0 < r["wire_bytes_per_event"] < r["raw_bytes_per_event"] and r["requests"] >= 1


def test_a_token_rotated_mid_run_into_one_a_header_cannot_carry_fails_in_one_line(h: Harness, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("token-fine-Qw12\n")

    def rotate(method: str, path: str) -> None:
        if path.startswith("/api/v1/events"):
            token.write_text("token-broken-Qw12\nX-Injected: 1\n")

    h.kube.on_request = rotate
    h.seed(2)
    assert h.run("run", "--loki-bearer-token-file", str(token)) == 1
    msg = h.one_error()
    assert "line break" in msg and "token-broken" not in h.stderr and h.loki.pushes == 0


def test_close_ends_the_senders_retry_wait_at_once_and_nothing_is_retried(loki: LokiDouble) -> None:
    import threading

    from job.loki import Pusher
    from job.lokiclient import LokiClient

    loki.fail_next(503, times=10, retry_after="300", body="overloaded")
    # The real clock: a real 300 s wait.
    pusher = Pusher(LokiClient(loki.url, retry_budget=600.0), batch_bytes=10)
    pusher.add((("job", "x"),), 1_700_000_000 * 10**9, "a line long enough to fill the batch")
    worker = pusher._worker
    while loki.pushes == 0 and worker.is_alive():
        threading.Event().wait(0.01)
    pusher.close()  # joins the sender: the run reads its counts only once it has ended
    assert not worker.is_alive() and loki.pushes == 1 and pusher.stats.retries == 1
