"""The sync end to end: the job through real HTTP against the API test server and the Loki double."""
from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from job.deps import Deps
from job.main import main
from tests.conftest import CM_PATH, NAMESPACE, STATE, Harness, legacy_event, now, recent_dump, rfc, series_event

ROOT = Path(__file__).resolve().parent.parent


def test_first_run_ships_every_event_once_and_saves_the_checkpoint(h: Harness) -> None:
    h.seed(120)
    assert h.run() == 0, h.stderr
    s = h.summary()
    assert (s["listed"], s["new"], s["lines"], s["pages"]) == (120, 120, 120, 3)
    assert len(h.loki.entries()) == 120
    h.assert_each_once()
    assert h.checkpoint_bytes() is not None


def test_second_run_with_nothing_new_pushes_nothing(h: Harness) -> None:
    h.seed(30)
    assert h.run() == 0
    pushes = h.loki.pushes
    assert h.run() == 0
    assert h.summary()["duplicates"] == 30 and h.summary()["lines"] == 0
    assert h.loki.pushes == pushes


def test_count_increment_ships_only_the_delta(h: Harness) -> None:
    events = h.seed(5)
    assert h.run() == 0
    bumped = dict(events[2], count=4, lastTimestamp=rfc(now() + dt.timedelta(seconds=2)))
    h.kube.put_event(bumped)
    assert h.run() == 0
    s = h.summary()
    assert (s["new"], s["duplicates"]) == (1, 4)
    line = json.loads(sorted(h.loki.entries(), key=lambda e: e.ts)[-1].line)
    assert (line["uid"], line["count"], line["new"]) == (bumped["metadata"]["uid"], 4, 3)
    h.assert_each_once()


def test_recreated_event_with_new_uid_and_count_above_one_ships(h: Harness) -> None:
    (e,) = h.seed(1)
    assert h.run() == 0
    h.kube.delete_event(e["metadata"]["namespace"], e["metadata"]["name"])
    again = legacy_event(e["metadata"]["name"], ns=e["metadata"]["namespace"], count=2)
    h.kube.put_event(again)
    assert h.run() == 0
    assert h.summary()["new"] == 1
    assert (again["metadata"]["uid"], 2) in h.shipped()


def test_new_style_series_events_use_series_count_and_last_observed_time(h: Harness) -> None:
    e = h.kube.put_event(series_event("web.1"))
    assert h.run() == 0
    later = now() + dt.timedelta(seconds=5)
    h.kube.put_event(dict(e, series={"count": 2, "lastObservedTime": rfc(later, micro=True)}))
    assert h.run() == 0
    entries = sorted(h.loki.entries(), key=lambda x: x.ts)
    assert [json.loads(x.line)["count"] for x in entries] == [1, 2]
    assert entries[-1].ts == int(later.timestamp()) * 10**9  # lastObservedTime, not eventTime


def test_crash_between_push_and_save_resends_identical_lines_that_loki_drops(h: Harness) -> None:
    h.seed(40)
    h.kube.fail("PATCH", CM_PATH, 500, times=1)  # pushed, then the save fails: as if killed in between
    assert h.run() == 1
    assert h.checkpoint_bytes() is None
    assert len(h.loki.entries()) == 40
    assert h.run() == 0
    assert h.summary()["lines"] == 40  # re-sent ...
    assert h.loki.duplicate_entries == 40  # ... and dropped by Loki as exact duplicates
    h.assert_each_once()


def test_a_run_skips_with_exit_0_while_another_holds_the_lease(h: Harness) -> None:
    h.seed(3)
    held = now() + dt.timedelta(seconds=30)
    h.put_lease("other-run", held)
    assert h.run() == 0
    assert "held by other-run" in h.stderr
    assert h.loki.pushes == 0


def test_expired_lease_is_taken_over_with_one_more_transition(h: Harness) -> None:
    h.seed(3)
    old = now() - dt.timedelta(minutes=5)
    h.put_lease("crashed-run", old, leaseTransitions=4)
    assert h.run() == 0
    spec = h.kube.existing("leases", NAMESPACE, "loki-event-sync")["spec"]
    assert spec["leaseTransitions"] == 5
    assert spec["holderIdentity"] == ""  # released at the end
    assert len(h.loki.entries()) == 3


def test_two_runs_started_together_ship_each_event_once(h: Harness) -> None:
    h.seed(200)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-m", "job", *h.args()], cwd=h.tmp, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    lines = [json.loads(line) for _, err in results for line in err.splitlines() if '"summary"' in line]
    assert sum(rec["summary"].get("lines", 0) for rec in lines) == 200  # a skipped run reports no counts
    h.assert_each_once()


def test_loki_down_fails_the_run_keeps_the_checkpoint_and_the_next_run_catches_up(h: Harness) -> None:
    h.seed(10)
    assert h.run() == 0
    before = h.checkpoint_bytes()
    h.seed(15)  # 5 more (names 10..14 are new; 0..9 replaced with fresh uids)
    args = h.args()
    args[args.index("--loki-url") + 1] = "http://127.0.0.1:9"  # discard port: nothing listens
    assert h.run(raw=args) == 1
    assert "cannot reach Loki at http://127.0.0.1:9" in h.stderr
    assert h.checkpoint_bytes() == before
    assert h.run() == 0
    h.assert_each_once()


def test_429_then_success_is_retried_and_ships_once(h: Harness) -> None:
    h.seed(10)
    h.loki.fail_next(429, times=2, retry_after="0")
    assert h.run() == 0
    assert h.summary()["retries"] == 2
    h.assert_each_once()


def test_partial_400_counts_rejects_and_still_saves(h: Harness) -> None:
    for i in range(6):
        h.kube.put_event(legacy_event(f"p-{i}.1", message="poison" if i == 2 else "fine"))
    h.loki.reject_matching("poison")
    assert h.run() == 0
    assert h.summary()["rejected"] == 1
    assert len(h.loki.entries()) == 5
    assert h.run() == 0
    assert h.summary()["lines"] == 0  # a bad entry does not block the checkpoint forever


def test_410_in_the_middle_of_a_list_restarts_and_loses_nothing(h: Harness) -> None:
    h.seed(180)
    h.kube.expire_continue_after(2)
    assert h.run() == 0
    assert h.summary()["pages"] > 4
    assert "expired" in h.stderr
    h.assert_each_once()


def test_configmap_409_fails_without_overwriting_and_the_next_run_catches_up(h: Harness) -> None:
    h.seed(8)
    h.kube.fail("PATCH", CM_PATH, 409, times=1)
    assert h.run() == 1
    assert "changed by someone else" in h.stderr
    assert h.checkpoint_bytes() is None
    assert h.run() == 0
    h.assert_each_once()


def test_corrupt_checkpoint_is_a_clear_error_and_is_never_overwritten(h: Harness) -> None:
    h.seed(4)
    junk = h.put_checkpoint(b"LESC\x01\x00\x00\x00\x05{not json")
    assert h.run() == 1
    msg = h.one_error()
    assert "configmap://loki-event-sync/loki-event-sync-checkpoint" in msg and "--reset-checkpoint" in msg
    assert h.loki.pushes == 0
    assert base64.b64encode(h.checkpoint_bytes() or b"").decode() == junk
    assert h.run("run", "--reset-checkpoint") == 0
    assert len(h.loki.entries()) == 4


def test_ledger_forgets_an_event_once_the_api_has_deleted_it_and_keeps_a_listed_one_however_old(h: Harness) -> None:
    # The event time says nothing about deletion: a recurring event three hours "old" is still listed,
    # so it stays a duplicate; once the API server deletes it (TTL), a complete list drops its entry.
    old = h.kube.put_event(legacy_event("old.1", last=now() - dt.timedelta(hours=3)))
    h.kube.put_event(legacy_event("new.1"))
    assert h.run() == 0
    assert (h.summary()["lines"], h.summary()["pruned"], h.summary()["ledger"]) == (2, 0, 2)
    assert h.run() == 0
    assert (h.summary()["lines"], h.summary()["duplicates"], h.summary()["ledger"]) == (0, 2, 2)
    h.kube.delete_event(old["metadata"]["namespace"], old["metadata"]["name"])
    assert h.run() == 0
    assert (h.summary()["pruned"], h.summary()["ledger"], h.summary()["duplicates"]) == (1, 1, 1)


def test_backfill_reships_a_window_into_hourly_streams_loki_accepts(h: Harness) -> None:
    t0 = now()
    h.kube.put_event(legacy_event("recent.1", last=t0))
    for i in range(3):
        h.kube.put_event(legacy_event(f"older.{i}", last=t0 - dt.timedelta(minutes=100 + i)))
    assert h.run() == 0
    # The regular stream already holds an entry at t0; entries 100 min older would be too_far_behind.
    assert h.run("backfill", "--since", "3h") == 0
    assert h.summary()["lines"] == 4 and h.summary()["rejected"] == 0
    backfilled = [e for e in h.loki.entries() if "backfill" in e.labels]
    assert len(backfilled) == 4
    assert h.run("backfill", "--since", "3h") == 0
    assert h.loki.duplicate_entries >= 4  # a repeated backfill is dropped as duplicates


def test_dry_run_prints_streams_and_touches_nothing(h: Harness) -> None:
    h.seed(5)
    lease_before = h.kube.get_object("leases", NAMESPACE, "loki-event-sync")
    requests_before = len(h.kube.requests)
    assert h.run("run", "--dry-run") == 0
    streams = [json.loads(line) for line in h.stdout.splitlines()]
    assert sum(len(s["values"]) for s in streams) == 5
    assert h.loki.pushes == 0
    assert h.kube.get_object("leases", NAMESPACE, "loki-event-sync") == lease_before
    assert h.checkpoint_bytes() is None
    writes = [r for r in h.kube.requests[requests_before:] if r[0] != "GET"]
    assert writes == []


def test_from_file_ships_a_saved_dump_with_a_file_checkpoint(h: Harness, tmp_path: Path) -> None:
    state = f"file://{tmp_path}/cp"
    args = ["run", "--from-file", str(recent_dump(tmp_path)), "--loki-url", h.loki.url, "--state", state]
    assert h.run(raw=args) == 0, h.stderr
    assert h.summary()["new"] == 8
    assert h.kube.requests == [] or all("events" not in p for _, p in h.kube.requests)
    assert h.run(raw=args) == 0
    s = h.summary()
    assert (s["new"], s["lines"], s["duplicates"] + s["before_horizon"]) == (0, 0, 8)


def test_seed_label_style_gives_the_collectors_labels_exactly(h: Harness) -> None:
    h.kube.put_event(legacy_event("x.1", ns="shop", kind="Pod", type_="Warning"))
    assert h.run("run", "--label-style", "seed", "--line-format", "seed") == 0
    (entry,) = h.loki.entries()
    assert {k: v for k, v in entry.labels.items() if k not in ("service_name", "level")} == {
        "_host": "node-1", "_namespace": "shop", "_type": "Warning", "_kind": "Pod"}
    assert (entry.labels["level"], entry.labels["service_name"]) == ("warning", "loki-event-sync")
    assert entry.line.startswith("Type:Warning, Reason:Started, Kind:Pod, Namespace:shop")


def test_field_selectors_reach_the_api_server(h: Harness) -> None:
    h.kube.put_event(legacy_event("a.1", kind="Pod", type_="Warning"))
    h.kube.put_event(legacy_event("b.1", kind="Node", type_="Warning"))
    h.kube.put_event(legacy_event("c.1", kind="Node", type_="Normal"))
    assert h.run("run", "--field-selector", "type=Warning,involvedObject.kind!=Pod") == 0
    assert [json.loads(e.line)["name"] for e in h.loki.entries()] == ["b"]


def test_unsupported_field_selector_is_a_one_line_error(h: Harness) -> None:
    assert h.run("run", "--field-selector", "lastTimestamp=5") == 1
    msg = h.one_error()
    assert "field label not supported: lastTimestamp" in msg


def test_secrets_never_reach_any_output(h: Harness, tmp_path: Path) -> None:
    h.seed(3)
    token = tmp_path / "token"
    token.write_text("tok-SECRET-5f1e2d\n")
    secrets = ["pw-SECRET-9a8b7c", "tok-SECRET-5f1e2d", "url-SECRET-0c0c"]
    env = {"LOKI_EVENT_SYNC_LOKI_PASSWORD": secrets[0], "LOKI_EVENT_SYNC_LOKI_USERNAME": "bob",
           "LOKI_EVENT_SYNC_LOKI_BEARER_TOKEN_FILE": str(token)}
    bad_url = f"http://bob:{secrets[2]}@127.0.0.1:9"
    args = h.args()
    args[args.index("--loki-url") + 1] = bad_url
    outputs = []
    for argv in (args, h.args(), ["run", "--loki-url", bad_url, "--page-size", "x"]):
        h.run(raw=argv, env=env)
        outputs.append(h.stdout + h.stderr)
    assert any("cannot reach Loki" in o for o in outputs)
    for out in outputs:
        for secret in secrets:
            assert secret not in out


def test_status_reports_the_checkpoint_as_json(h: Harness) -> None:
    h.seed(7)
    ran_at = now()
    assert h.run(clock=lambda: ran_at) == 0
    raw = ["status", "--kubeconfig", h.kubeconfig, "--state", STATE, "--output", "json"]
    assert h.run(raw=raw, clock=lambda: ran_at + dt.timedelta(seconds=42)) == 0
    info = json.loads(h.stdout)
    assert info["ledger_entries"] == 7 and info["last_run"]["new"] == 7
    assert info["last_success_seconds_ago"] == 42 and info["stale"] is False
    # Stale once the last success is older than the event TTL (1 h by default).
    assert h.run(raw=raw, clock=lambda: ran_at + dt.timedelta(seconds=3601)) == 0
    assert json.loads(h.stdout)["stale"] is True
    assert info["watermark"].endswith("Z")


def test_text_log_format_is_for_people(h: Harness) -> None:
    h.seed(2)
    assert h.run("run", "--log-format", "text") == 0
    last = h.stderr.strip().splitlines()[-1]
    assert " INFO " in last and "run completed: listed=2 new=2" in last and not last.startswith("{")


def test_a_gap_longer_than_the_ttl_is_warned_counted_and_marked_in_loki(h: Harness) -> None:
    h.seed(2)
    later = now()
    earlier = later - dt.timedelta(hours=2)
    assert h.run(clock=lambda: earlier) == 0  # the last success was two hours ago
    h.seed(3)
    assert h.run(clock=lambda: later) == 0
    assert h.summary()["gap_seconds"] == 3600  # two hours since, minus the one-hour event TTL
    markers = [json.loads(e.line) for e in h.loki.entries() if "EventsMayBeMissing" in e.line]
    assert len(markers) == 1 and "may be missing" in markers[0]["message"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_on_a_terminal_in_text_mode_only(h: Harness) -> None:
    h.seed(120)
    for fmt, shown in (("text", True), ("json", False)):
        err = _Tty()
        deps = Deps(stdout=io.StringIO(), stderr=err)
        assert main(h.args("backfill", "--since", "1h", "--log-format", fmt), env={}, deps=deps) == 0
        assert bool(re.search(r"pages \d+  events \d+", err.getvalue())) is shown


def test_sigterm_releases_the_lease_and_leaves_the_checkpoint(h: Harness) -> None:
    h.seed(5)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "job", *h.args()], cwd=h.tmp,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lease_gets = 0

    def terminate_before_the_save(method: str, path: str) -> None:
        # The Lease's second GET is the still-held check: every push is acknowledged, the save is
        # next. The signal is sent before the server answers, so it lands exactly there, on any
        # machine, with no timing involved.
        nonlocal lease_gets
        if method == "GET" and path.startswith(f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/"):
            lease_gets += 1
            if lease_gets == 2:
                proc.send_signal(signal.SIGTERM)

    h.kube.on_request = terminate_before_the_save
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        h.kube.on_request = None
        proc.kill()  # no-op once it exited; never leave it behind when an assertion failed
    assert lease_gets == 2 and h.loki.accepted_entries == 5  # it was stopped after its pushes
    assert proc.returncode == 1
    assert "interrupted" in err and "Traceback" not in err
    assert h.kube.existing("leases", NAMESPACE, "loki-event-sync")["spec"]["holderIdentity"] == ""
    assert h.checkpoint_bytes() is None
