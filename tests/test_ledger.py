"""The ledger's promises end to end, through real HTTP: time you can trust, forgetting by absence,
dumps that are what they claim, and checkpoints that are refused before they can do harm."""
from __future__ import annotations

import datetime as dt
import json
import random
import struct
import tracemalloc
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest

from job.checkpointing import advance_list_rv, fit
from job.dedupe import NS, Ledger
from job.summary import Summary
from state.base import MAGIC, Checkpoint, CheckpointCorrupt, decode, encode
from tests.conftest import CM, NAMESPACE, Harness, legacy_event, now, patch_header, rfc, series_event


def skewed(name: str, *, by: dt.timedelta | None = None, at: dt.datetime | None = None, count: int = 1,
           created: dt.datetime | None = None) -> dict[str, Any]:
    """An event from a node whose clock is off: the API server stamps creationTimestamp itself."""
    reported = at or now() + (by or dt.timedelta())
    e = legacy_event(name, count=count, last=reported)
    e["metadata"]["creationTimestamp"] = rfc(created or now())
    return e


def skew_entries(h: Harness) -> list[Any]:
    return [e for e in h.loki.entries() if "clock_skew" in e.labels]


# --- issue 9, finding 1: one event dated in the future stopped everything after it -----------------


def test_one_event_two_hours_ahead_does_not_stop_the_next_twenty_from_shipping(h: Harness) -> None:
    h.kube.put_event(skewed("ahead.1", by=dt.timedelta(hours=2)))
    assert h.run() == 0, h.stderr
    for i in range(20):
        h.kube.put_event(legacy_event(f"later-{i}.1"))
    assert h.run() == 0, h.stderr
    s = h.summary()
    assert (s["new"], s["lines"], s["before_horizon"], s["rejected"]) == (20, 20, 0, 0)
    h.assert_each_once()
    (ahead,) = skew_entries(h)  # it landed too, once, at a time Loki accepts
    assert ahead.ts <= (now() + dt.timedelta(minutes=5)).timestamp() * NS
    assert json.loads(ahead.line)["lastTimestamp"] > rfc(now() + dt.timedelta(hours=1))  # its own time kept


def test_an_event_dated_2100_ships_once_and_the_checkpoint_stays_usable(h: Harness) -> None:
    h.kube.put_event(skewed("y2100.1", at=dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)))
    h.kube.put_event(skewed("y9999.1", at=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)))
    assert h.run() == 0, h.stderr
    assert h.summary()["rejected"] == 0 and len(skew_entries(h)) == 2
    assert "clock_skew" in h.summary() and h.summary()["clock_skew"] == 2
    assert "check the clocks of the nodes" in h.stderr  # said once, as a warning
    cp = decode(h.checkpoint_bytes() or b"", "x", now_ns=int(now().timestamp()) * NS)
    assert cp.watermark_ns <= (now() + dt.timedelta(minutes=5)).timestamp() * NS  # not poisoned
    h.kube.put_event(legacy_event("after.1"))
    assert h.run() == 0
    assert h.summary()["new"] == 1 and h.summary()["duplicates"] == 2
    h.assert_each_once()


# --- issue 9, finding 2: a node clock more than ~92 min behind was never shipped ---------------------


def test_events_from_a_node_clock_far_behind_land_in_loki_once(h: Harness) -> None:
    h.kube.put_event(legacy_event("fresh.1"))  # the regular stream's newest entry is now
    assert h.run() == 0
    for name, behind in (("behind-93m.1", 93), ("behind-3h.1", 180), ("behind-2d.1", 2 * 24 * 60)):
        h.kube.put_event(skewed(name, by=-dt.timedelta(minutes=behind)))
    recurring = h.kube.put_event(skewed("recurring.1", by=-dt.timedelta(hours=2),
                                        created=now() - dt.timedelta(days=3)))
    assert h.run() == 0, h.stderr
    assert (h.summary()["new"], h.summary()["rejected"], h.summary()["clock_skew"]) == (4, 0, 4)
    # A bump from the same node, still two hours behind: shipped again with its trusted time.
    two_hours_behind = now() - dt.timedelta(hours=2) + dt.timedelta(seconds=1)
    h.kube.put_event(dict(recurring, count=2, lastTimestamp=rfc(two_hours_behind)))
    assert h.run() == 0
    assert (h.summary()["new"], h.summary()["rejected"]) == (1, 0)
    h.assert_each_once()
    assert all(e.ts >= (now() - dt.timedelta(hours=1)).timestamp() * NS for e in skew_entries(h))


def test_a_crash_re_sends_skewed_entries_identically_so_loki_drops_the_copies(h: Harness) -> None:
    h.kube.put_event(legacy_event("fresh.1"))
    assert h.run() == 0
    h.kube.put_event(skewed("ahead.1", by=dt.timedelta(hours=3)))
    h.kube.put_event(skewed("behind.1", by=-dt.timedelta(hours=3)))
    h.kube.put_event(series_event("series.1", count=2))
    h.kube.fail("PATCH", rf"/api/v1/namespaces/{NAMESPACE}/configmaps/{CM}", 500, times=1)
    assert h.run() == 1  # pushed, then the save failed: as if killed in between
    before = sorted((e.ts, e.line) for e in h.loki.entries())
    assert h.run() == 0
    assert h.summary()["lines"] == 3 and h.loki.duplicate_entries == 3  # identical: Loki dropped them
    assert sorted((e.ts, e.line) for e in h.loki.entries()) == before
    h.assert_each_once()


# --- forgetting: by absence from a complete list, never by an event's own time ----------------------


def test_a_listing_restarted_by_410_still_forgets_only_what_the_api_deleted(h: Harness) -> None:
    events = [h.kube.put_event(legacy_event(f"p-{i}.1", ns=f"ns-{i % 3}")) for i in range(120)]
    assert h.run() == 0
    for e in events[:10]:
        h.kube.delete_event(e["metadata"]["namespace"], e["metadata"]["name"])
    h.kube.expire_continue_after(1)  # the second page's continue token has expired: the list starts over
    assert h.run() == 0, h.stderr
    s = h.summary()
    assert (s["pruned"], s["ledger"], s["lines"], s["pages"]) == (10, 110, 0, 4)  # page 1 was read twice


def test_a_field_selector_change_never_forgets_events_outside_the_new_selector(h: Harness) -> None:
    h.kube.put_event(legacy_event("warn.1", type_="Warning"))
    h.kube.put_event(legacy_event("norm.1", type_="Normal"))
    assert h.run() == 0
    assert h.run("run", "--field-selector", "type=Warning") == 0
    assert (h.summary()["listed"], h.summary()["pruned"], h.summary()["ledger"]) == (1, 0, 2)
    assert h.run("run", "--field-selector", "type=Warning") == 0
    assert h.summary()["pruned"] == 0  # recorded under another scope: absence proves nothing
    assert h.run() == 0  # the selector is gone again: the Normal event is still a duplicate
    assert (h.summary()["duplicates"], h.summary()["lines"]) == (2, 0)
    h.assert_each_once()


def test_a_dump_never_forgets_what_the_api_still_holds(h: Harness, tmp_path: Path) -> None:
    e = h.kube.put_event(legacy_event("kept.1"))
    assert h.run() == 0
    dump = tmp_path / "other.json"
    dump.write_text(json.dumps({"kind": "List", "apiVersion": "v1", "items": [legacy_event("elsewhere.1")]}))
    assert h.run("run", "--from-file", str(dump)) == 0
    assert (h.summary()["pruned"], h.summary()["ledger"]) == (0, 2)
    assert h.run() == 0  # a complete list: the dump's event is not in the API, the listed one stays
    assert (h.summary()["pruned"], h.summary()["duplicates"], h.summary()["lines"]) == (1, 1, 0)
    assert (e["metadata"]["uid"], 1) in h.shipped()


class _SmallStore:
    name = "configmap://test/small"
    max_bytes = 200_000


def test_size_limit_drops_the_entries_recorded_longest_ago_and_never_reships_them() -> None:
    cp = Checkpoint()
    rnd = random.Random(7)
    base = 1_795_600_000
    uids = [str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(20_000)]
    created = {u: dt.datetime.fromtimestamp(base + i // 10, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
               for i, u in enumerate(uids)}
    for run in range(4):  # four runs, 5,000 new events each, ten minutes apart
        ledger = Ledger(cp, ttl_s=3600, now_ns=(base + 2000 + 600 * run) * NS)
        for i, u in enumerate(uids[: (run + 1) * 5000]):  # earlier ones are listed again, as duplicates
            assert ledger.consider(u, 1, (base + 2000 + 600 * run) * NS, created[u]).new == (i >= run * 5000)
        assert ledger.finish(complete=True) == 0
    s = Summary()
    data = fit(cp, ledger, _SmallStore(), s)  # type: ignore[arg-type]
    assert len(data) <= _SmallStore.max_bytes - 4096
    assert 0 < s.pruned and s.ledger == len(cp.ledger) < 20_000
    assert set(cp.ledger) == set(uids[-len(cp.ledger):])  # the first recorded went first
    # Listed again, a dropped uid is skipped as created before the horizon, never re-shipped ...
    ledger = Ledger(decode(data, "x"), ttl_s=3600, now_ns=(base + 5000) * NS)
    assert ledger.consider(uids[0], 1, base * NS, created[uids[0]]).why == "before-horizon"
    # ... while an event the API server created after the last list is new, whatever it reports.
    fresh = dt.datetime.fromtimestamp(base + 4900, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ledger.consider(str(uuid.uuid4()), 1, (base - 86_400) * NS, fresh).new == 1


def test_a_list_older_than_the_checkpoints_forgets_nothing() -> None:
    cp = Checkpoint(ledger={"a": (1, 100), "b": (1, 100)}, list_rv="500", listed_ns=100 * NS)
    ledger = Ledger(cp, ttl_s=3600, now_ns=200 * NS)
    ledger.consider("a", 1, 150 * NS)
    # served from a cache that has not seen "b" yet
    assert ledger.finish(complete=True, list_rv="400") == 0 and set(cp.ledger) == {"a", "b"}
    ledger = Ledger(cp, ttl_s=3600, now_ns=300 * NS)
    ledger.consider("a", 1, 150 * NS)
    assert ledger.finish(complete=True, list_rv="600") == 1 and set(cp.ledger) == {"a"}


def test_the_next_runs_list_floor_only_moves_forward() -> None:
    cp = Checkpoint(list_rv="500")
    advance_list_rv(cp, "400")  # a stale cache's list must not lower the floor
    assert cp.list_rv == "500"
    advance_list_rv(cp, "")
    assert cp.list_rv == "500"
    advance_list_rv(cp, "600")
    assert cp.list_rv == "600"
    advance_list_rv(cp, "opaque-rv")  # not an etcd revision: taken as the API allows
    assert cp.list_rv == "opaque-rv"


def test_a_complete_list_forgets_only_loaded_entries_it_did_not_list() -> None:
    """The ledger tracks "listed again" only for entries loaded with the checkpoint; what this run
    recorded was listed by it and stays, even when the job's clock has not moved since the load."""
    cp = Checkpoint(ledger={"gone": (1, 100), "kept": (1, 100), "filtered": (2, 100)}, listed_ns=100 * NS)
    ledger = Ledger(cp, ttl_s=3600, now_ns=100 * NS)  # the same second the loaded entries were recorded
    assert ledger.is_duplicate("kept", 1)
    ledger.saw("filtered")
    ledger.saw("never-recorded")  # filtered and unknown: nothing to keep, nothing to forget
    assert ledger.consider("new", 1, 100 * NS).new == 1
    assert ledger.consider("skipped-as-duplicate-later", 1, 100 * NS).new == 1
    assert ledger.finish(complete=True) == 1
    assert set(cp.ledger) == {"kept", "filtered", "new", "skipped-as-duplicate-later"}


def test_a_first_run_keeps_no_listed_set_and_forgets_nothing() -> None:
    ledger = Ledger(Checkpoint(), ttl_s=3600, now_ns=100 * NS)
    for i in range(50):
        assert ledger.consider(f"u{i}", 1, 100 * NS).new == 1
    assert not ledger.seen and ledger.finish(complete=True) == 0 and len(ledger.cp.ledger) == 50


def test_creation_times_decide_the_same_when_their_cache_overflows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsed creationTimestamps are cached per run; a full cache starts over, never answers wrong."""
    monkeypatch.setattr("job.dedupe._CREATED_CACHE", 2)
    base = 1_795_600_000
    cp = Checkpoint(prune_horizon_ns=base * NS, listed_ns=(base + 100) * NS)
    ledger = Ledger(cp, ttl_s=3600, now_ns=(base + 200) * NS)
    for i in range(6):  # alternately created before and after the horizon, each time twice
        created = rfc(dt.datetime.fromtimestamp(base - 50 + 20 * i, dt.timezone.utc))
        for k in range(2):
            v = ledger.consider(f"u{i}-{k}", 1, (base + 150) * NS, created)
            assert (v.why == "before-horizon") == (i < 3) and (v.new == 1) == (i >= 3)


# --- issue 9, findings 6, 7, 8: inputs are what they claim ----------------------------------------


def dump(tmp_path: Path, doc: Any) -> str:
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_from_file_honours_the_field_selector_as_the_api_server_would(h: Harness, tmp_path: Path) -> None:
    items = [legacy_event("w.1", type_="Warning", kind="Node"), legacy_event("n.1", type_="Normal"),
             legacy_event("w.2", type_="Warning", kind="Pod")]
    path = dump(tmp_path, {"kind": "List", "apiVersion": "v1", "items": items})
    assert h.run("run", "--from-file", path, "--field-selector", "type=Warning,involvedObject.kind!=Pod") == 0
    assert [json.loads(e.line)["event"] for e in h.loki.entries()] == ["w.1"]
    assert h.run("run", "--from-file", path, "--field-selector", "lastTimestamp=x") == 2
    assert "field label not supported: lastTimestamp" in h.stderr and "Traceback" not in h.stderr


def test_a_single_event_dump_ships(h: Harness, tmp_path: Path) -> None:
    e = legacy_event("alone.1")
    assert h.run("run", "--from-file", dump(tmp_path, e)) == 0, h.stderr
    assert h.shipped() == [(e["metadata"]["uid"], 1)]


@pytest.mark.parametrize("doc, says", [
    ({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "rows": []}, "Table"),
    ({"kind": "PodList", "apiVersion": "v1", "items": [{"kind": "Pod", "metadata": {"uid": "u"}}]}, "PodList"),
    ({"kind": "List", "apiVersion": "v1", "items": [{"kind": "Pod", "apiVersion": "v1", "metadata": {"uid": "u"}}]},
     "v1 Pod"),
    ({"kind": "EventList", "apiVersion": "events.k8s.io/v1", "items": []}, "events.k8s.io/v1"),
], ids=["table", "podlist", "list-of-pods", "events.k8s.io"])
def test_a_dump_of_something_else_is_exit_2_saying_what_it_holds(h: Harness, tmp_path: Path, doc: Any,
                                                                  says: str) -> None:
    assert h.run("run", "--from-file", dump(tmp_path, doc)) == 2
    msg = h.one_error()
    assert says in msg and "kubectl get events -A -o json" in msg
    assert h.loki.pushes == 0 and h.checkpoint_bytes() is None


@pytest.mark.parametrize("how", ["flag", "env"])
def test_an_empty_include_filter_is_no_filter(h: Harness, how: str) -> None:
    h.kube.put_event(legacy_event("a.1", ns="shop"))
    h.kube.put_event(legacy_event("b.1", ns="kube-system"))
    if how == "flag":
        assert h.run("run", "--include-namespaces", "", "--exclude-reasons", "") == 0
    else:
        assert h.run(env={"LOKI_EVENT_SYNC_INCLUDE_NAMESPACES": "", "LOKI_EVENT_SYNC_INCLUDE_KINDS": ""}) == 0
    assert (h.summary()["lines"], h.summary()["filtered"]) == (2, 0)


@pytest.mark.parametrize("extra, says", [
    (["--include-namespaces", "a{4294967296}"], "too large a regular expression"),
    (["--exclude-reasons", "x" * 5000], "longer than the 1000 allowed"),
    (["--since", "1000000d"], "more than 10 years"),
    (["--lease-duration", "1000000d"], "longer than the 1h"),
    (["--max-line-bytes", "200"], "1024-byte minimum"),
    (["--max-line-bytes", "10"], "1024-byte minimum"),
])
def test_absurd_values_are_exit_2_with_one_line(h: Harness, extra: list[str], says: str) -> None:
    assert h.run("run", *extra) == 2
    lines = h.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in h.stderr
    assert h.kube.requests == [] or all("events" not in p for _, p in h.kube.requests)


# --- checkpoints: bounded decompression, sane values, the 0.1 format -------------------------------


def bomb(inflated: int, entries: int) -> bytes:
    """A small checkpoint whose body inflates to ``inflated`` bytes of zeros."""
    z = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    body = b"".join(z.compress(chunk) for _ in range(inflated >> 20)) + z.flush()
    head = json.dumps({"watermark_ns": 0, "prune_horizon_ns": 0, "last_success_ns": None, "last_run": {},
                       "listed_ns": 0, "list_rv": "", "scope": "", "scope_since_ns": 0, "base_s": 0,
                       "entries": entries, "other": []}).encode()
    return struct.pack(">4sBI", MAGIC, 2, len(head)) + head + body


# The rule (state/base.py decode): the entry count is bounded by the compressed size, and inflating
# stops at what the entries need. So what a bomb costs follows from its stored size, not from what it
# inflates to; 64 MiB of zeros in 64 KiB shows it as a gigabyte would, in a fraction of the time.
BOMB = 64 << 20


@pytest.mark.parametrize("claim", ["as_many_entries_as_it_inflates_to", "the_most_entries_its_size_allows"])
def test_a_checkpoint_that_would_inflate_far_beyond_its_entries_is_refused_before_it_allocates(claim: str) -> None:
    empty = bomb(BOMB, 0)
    compressed = len(empty) - 9 - struct.unpack_from(">4sBI", empty)[2]
    entries = BOMB // 24 if claim == "as_many_entries_as_it_inflates_to" else 1000 + compressed // 2
    data = bomb(BOMB, entries)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointCorrupt) as caught:
            decode(data, "here")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < BOMB // 16, f"{peak} bytes allocated"  # the gigabyte's old bound, 64 MiB, to scale
    says = "entries cannot fit" if claim == "as_many_entries_as_it_inflates_to" else "does not hold the"
    assert says in str(caught.value)


def test_a_checkpoint_bomb_fails_the_run_with_one_line_and_leaves_the_checkpoint_as_it_was(h: Harness) -> None:
    data = bomb(BOMB, BOMB // 24)  # a header that agrees with what the body inflates to
    assert len(data) < BOMB // 512
    blob = h.put_checkpoint(data)
    assert h.run() == 1
    msg = h.one_error()
    assert "corrupt" in msg and "entries cannot fit" in msg
    assert (h.kube.get_object("configmaps", NAMESPACE, CM) or {})["binaryData"]["checkpoint"] == blob  # untouched
    assert h.loki.pushes == 0


@pytest.mark.parametrize("field, value", [
    ("prune_horizon_ns", 4_102_444_800 * NS),  # 2100
    ("watermark_ns", 10**30),
    ("last_success_ns", 4_102_444_800 * NS),
    ("base_s", 4_102_444_800),  # every ledger time in 2100
], ids=["horizon-2100", "watermark-1e30", "last-success-2100", "ledger-times-2100"])
def test_a_checkpoint_with_impossible_times_is_corrupt_and_left_untouched(h: Harness, field: str, value: int) -> None:
    h.kube.put_event(legacy_event("a.1"))
    cp = Checkpoint(ledger={str(uuid.uuid4()): (1, int(now().timestamp()))}, last_run={})
    blob = h.put_checkpoint(patch_header(encode(cp), **{field: value}))
    assert h.run() == 1
    msg = h.one_error()
    assert "corrupt" in msg and "years of now" in msg, h.stderr
    assert (h.kube.get_object("configmaps", NAMESPACE, CM) or {})["binaryData"]["checkpoint"] == blob
    assert h.loki.pushes == 0


def v1_checkpoint(ledger: dict[str, tuple[int, int]], watermark_s: int) -> bytes:
    """The 0.1 format byte for byte: times were event times, offsets from the watermark."""
    uids = sorted(ledger)
    raw = b"".join(uuid.UUID(u).bytes for u in uids)
    planes = b"".join(raw[i::16] for i in range(16))
    counts = b"".join(struct.pack(">I", ledger[u][0]) for u in uids)
    offsets = b"".join(struct.pack(">I", watermark_s - ledger[u][1]) for u in uids)
    head = json.dumps({"entries": len(uids), "last_run": {}, "last_success_ns": watermark_s * NS, "other": [],
                       "prune_horizon_ns": (watermark_s - 5520) * NS, "watermark_ns": watermark_s * NS},
                      separators=(",", ":"), sort_keys=True).encode()
    return struct.pack(">4sBI", MAGIC, 1, len(head)) + head + zlib.compress(planes + counts + offsets, 1)


def test_a_checkpoint_from_0_1_loads_and_nothing_it_holds_is_shipped_again(h: Harness) -> None:
    e = h.kube.put_event(legacy_event("known.1", count=3))
    h.kube.put_event(legacy_event("unknown.1"))
    t = int(now().timestamp())
    h.put_checkpoint(v1_checkpoint({e["metadata"]["uid"]: (3, t)}, t))
    assert h.run() == 0, h.stderr
    assert (h.summary()["duplicates"], h.summary()["new"]) == (1, 1)
    assert decode(h.checkpoint_bytes() or b"", "x")  # written back in the current format


def test_decode_bounds_counts_to_int32_and_refuses_a_count_of_zero() -> None:
    t = 1_795_600_000
    for count in (0, 2**31):
        data = patch_header(encode(Checkpoint()), other=[["not-a-uuid", count, t]])
        with pytest.raises(CheckpointCorrupt, match="count outside"):
            decode(data, "x", now_ns=t * NS)


def test_a_0_1_checkpoint_poisoned_by_a_future_event_is_corrupt_not_a_silent_stop(h: Harness) -> None:
    # 0.1 kept the largest event time as its watermark: one Event dated 2100 left a horizon that
    # skipped everything after it. Such a checkpoint is refused (exit 1, untouched), not obeyed.
    h.kube.put_event(legacy_event("a.1"))
    t = 4_102_444_800  # 2100-01-01
    blob = h.put_checkpoint(v1_checkpoint({str(uuid.uuid4()): (1, t)}, t))
    assert h.run() == 1
    msg = h.one_error()
    assert "years of now" in msg and "--reset-checkpoint" in msg
    assert (h.kube.get_object("configmaps", NAMESPACE, CM) or {})["binaryData"]["checkpoint"] == blob
    assert h.run("run", "--reset-checkpoint") == 0 and h.summary()["lines"] == 1


def test_status_refuses_a_checkpoint_with_impossible_times_as_a_run_does(h: Harness) -> None:
    cp = Checkpoint(ledger={str(uuid.uuid4()): (1, int(now().timestamp()))}, last_run={})
    h.put_checkpoint(patch_header(encode(cp), prune_horizon_ns=4_102_444_800 * NS))
    assert h.run(raw=["status", "--kubeconfig", h.kubeconfig, "--state", f"configmap://{NAMESPACE}/{CM}"]) == 1
    assert "years of now" in h.stderr and "Traceback" not in h.stderr
