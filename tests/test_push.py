"""The push path's parts, each on its own: the Batch, the Pusher pipeline (against a recording sink), the
LokiClient (one batch against the Loki double, no pipeline) and the dry-run sink. The whole path under a
real run is tested in test_loki.py, test_faults.py and test_sync.py."""
from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator

import pytest

from job.batch import Batch
from job.cmd import parse
from job.deps import Deps
from job.dryrun import DryRunSink
from job.lines import Labels
from job.loki import Pusher, pusher_for
from job.lokiclient import LokiClient
from job.transport import PushError, PushStats
from tests.conftest import FastClock
from tests.lokidouble import NS, LokiDouble

T0 = 1_764_000_000 * NS  # the double's "now": the entries' age never depends on today's date
A: Labels = (("_namespace", "a"),)
B: Labels = (("_namespace", "b"),)


class RecordingSink:
    """A Sink that keeps what it is sent, raises ``error`` at its first send only, and, after ``hold()``,
    makes a send wait until ``stop()``."""

    safe_url = "the recording sink"

    def __init__(self, error: Exception | None = None, finish_error: Exception | None = None) -> None:
        self.stats = PushStats()
        self.sent: list[tuple[str, list[str]]] = []
        self.calls: list[str] = []
        self.error, self.finish_error = error, finish_error
        self.in_send = threading.Event()
        self._go = threading.Event()
        self._go.set()

    def hold(self) -> None:
        self._go.clear()

    def send(self, tenant: str, batch: Batch) -> None:
        self.in_send.set()
        self._go.wait(30)
        error, self.error = self.error, None
        if error is not None:
            raise error
        self.sent.append((tenant, [line for _, (_, line, _) in batch.entries()]))

    def finish(self) -> None:
        self.calls.append("finish")
        if self.finish_error is not None:
            raise self.finish_error

    def stop(self) -> None:
        self.calls.append("stop")
        self._go.set()

    def close(self) -> None:
        self.calls.append("close")


def line(i: int) -> str:
    return f"entry {i:04d}"  # every line the same length, so batch sizes are exact


def _entry_size() -> int:
    batch = Batch()
    batch.add(A, T0, line(0), None)
    return batch.size


ENTRY_SIZE = _entry_size()  # what the Batch counts for one entry: its line plus the JSON around it


# --- the Batch -----------------------------------------------------------------------------------------------


def test_a_batch_payload_holds_each_stream_once_oldest_entry_first_with_metadata_only_where_given() -> None:
    batch = Batch()
    batch.add(A, T0 + 2, "late", None)
    batch.add(B, T0, "other", {"uid": "u"})
    batch.add(A, T0 + 1, "early", None)
    streams = json.loads(batch.payload())["streams"]
    assert streams == [{"stream": {"_namespace": "a"}, "values": [[str(T0 + 1), "early"], [str(T0 + 2), "late"]]},
                       {"stream": {"_namespace": "b"}, "values": [[str(T0), "other", {"uid": "u"}]]}]
    assert (batch.count, batch.size) == (3, len("late") + len("other") + len("early") + 3 * 30)


def test_splitting_a_batch_keeps_every_entry_exactly_once_across_the_halves() -> None:
    batch = Batch()
    for i in range(7):
        batch.add(A if i % 2 else B, T0 + i, line(i), {"n": str(i)} if i % 3 else None)
    first, second = batch.split()
    assert (first.count, second.count) == (3, 4) and first.size + second.size == batch.size
    assert sorted(first.entries() + second.entries()) == sorted(batch.entries())


# --- the pipeline ------------------------------------------------------------------------------------------


def test_the_pipeline_cuts_a_batch_once_it_reaches_batch_bytes_and_ships_them_in_order() -> None:
    sink = RecordingSink()
    pusher = Pusher(sink, batch_bytes=3 * ENTRY_SIZE)
    for i in range(7):
        pusher.add(A, T0 + i, line(i))
    pusher.flush()
    pusher.close()
    assert [lines for _, lines in sink.sent] == [[line(0), line(1), line(2)], [line(3), line(4), line(5)], [line(6)]]


def test_the_pipeline_keeps_each_tenants_entries_in_batches_of_their_own() -> None:
    sink = RecordingSink()
    pusher = Pusher(sink, batch_bytes=2 * ENTRY_SIZE, tenant="default")
    tenants = ["a", "b", None]  # None: the run's --tenant
    for i in range(9):
        pusher.add(A, T0 + i, line(i), tenant=tenants[i % 3])
    pusher.flush()
    pusher.close()
    got: dict[str, list[str]] = {}
    for tenant, lines in sink.sent:
        got.setdefault(tenant, []).extend(lines)
    assert got == {"a": [line(0), line(3), line(6)], "b": [line(1), line(4), line(7)],
                   "default": [line(2), line(5), line(8)]}
    assert all(len(lines) <= 2 for _, lines in sink.sent)


def test_a_flush_with_nothing_added_sends_nothing_and_starts_no_sender() -> None:
    sink = RecordingSink()
    pusher = Pusher(sink, batch_bytes=ENTRY_SIZE)
    pusher.flush()
    pusher.close()
    assert sink.sent == [] and sink.calls == ["finish", "stop", "close"] and pusher._worker.ident is None


def test_a_failed_send_is_raised_in_the_callers_thread_and_nothing_after_it_is_sent() -> None:
    sink = RecordingSink(error=PushError("Loki said no"))
    pusher = Pusher(sink, batch_bytes=ENTRY_SIZE)
    with pytest.raises(PushError, match="Loki said no"):
        for i in range(5):  # the failure surfaces at the next add or at the flush, whichever comes first
            pusher.add(A, T0 + i, line(i))
        pusher.flush()
    pusher.close()
    assert sink.sent == [] and "finish" not in sink.calls


def test_an_unexpected_exception_in_the_sender_fails_the_push_naming_its_type_not_its_text() -> None:
    sink = RecordingSink(error=ValueError("text that may quote a credential"))
    pusher = Pusher(sink, batch_bytes=ENTRY_SIZE)
    pusher.add(A, T0, line(0))
    with pytest.raises(PushError) as failed:
        pusher.flush()
    pusher.close()
    assert str(failed.value) == "pushing to the recording sink failed: ValueError"


def test_flush_asks_the_sink_to_finish_after_the_last_batch_and_raises_what_it_finds() -> None:
    sink = RecordingSink(finish_error=PushError("Loki accepted none of them"))
    pusher = Pusher(sink, batch_bytes=2 * ENTRY_SIZE)
    for i in range(3):
        pusher.add(A, T0 + i, line(i))
    with pytest.raises(PushError, match="accepted none"):
        pusher.flush()
    pusher.close()
    assert len(sink.sent) == 2 and sink.calls == ["finish", "stop", "close"]


def test_close_stops_the_sink_lets_the_send_in_flight_end_and_joins_the_sender_before_it_returns() -> None:
    sink = RecordingSink()
    sink.hold()
    pusher = Pusher(sink, batch_bytes=ENTRY_SIZE)
    pusher.add(A, T0, line(0))
    assert sink.in_send.wait(30)
    pusher.add(A, T0 + 1, line(1))  # queued behind the send in flight
    pusher.close()
    assert not pusher._worker.is_alive()
    assert [lines for _, lines in sink.sent] == [[line(0)]] and sink.calls == ["stop", "close"]


# --- the Loki client, one batch at a time --------------------------------------------------------------------


@pytest.fixture
def fixed_loki() -> Iterator[LokiDouble]:
    with LokiDouble(now_ns=lambda: T0 + 60 * NS) as double:
        yield double


def batch_of(n: int, labels: Labels = A) -> Batch:
    batch = Batch()
    for i in range(n):
        batch.add(labels, T0 + i, line(i), None)
    return batch


def test_the_client_sends_one_batch_as_one_request_and_counts_what_it_sent(fixed_loki: LokiDouble) -> None:
    batch = batch_of(3)
    client = LokiClient(fixed_loki.url)
    client.send("", batch)
    client.finish()
    client.close()
    assert fixed_loki.pushes == 1 and [e.line for e in fixed_loki.entries()] == [line(0), line(1), line(2)]
    s = client.stats
    assert (s.requests, s.batches, s.lines, s.bytes_raw) == (1, 1, 3, len(batch.payload()))
    assert 0 < s.bytes_sent < s.bytes_raw  # gzip


def test_the_client_waits_out_retry_after_on_its_clock_and_the_batch_lands_once(fixed_loki: LokiDouble) -> None:
    fixed_loki.fail_next(503, times=2, retry_after="7")
    clock = FastClock()
    client = LokiClient(fixed_loki.url, retry_budget=60, clock=clock)  # type: ignore[arg-type]
    client.send("", batch_of(2))
    client.close()
    assert clock.sleeps == [7.0, 7.0] and client.stats.retries == 2 and fixed_loki.pushes == 3
    assert len(fixed_loki.entries()) == 2


def test_the_client_gives_up_when_the_next_wait_would_pass_its_retry_budget(fixed_loki: LokiDouble) -> None:
    fixed_loki.fail_next(503, times=5, retry_after="7")
    clock = FastClock()
    client = LokiClient(fixed_loki.url, retry_budget=10, clock=clock)  # type: ignore[arg-type]
    with pytest.raises(PushError, match=r"gave up after 2 attempts within --retry-budget 10s"):
        client.send("", batch_of(2))
    client.close()
    assert clock.sleeps == [7.0] and fixed_loki.pushes == 2 and fixed_loki.entries() == []


def test_the_client_counts_entries_loki_refuses_one_by_one_and_returns(fixed_loki: LokiDouble) -> None:
    fixed_loki.reject_matching(line(1))
    client = LokiClient(fixed_loki.url)
    client.send("", batch_of(3))
    client.finish()  # some landed: the run goes on
    client.close()
    assert client.stats.rejected == 1 and [e.line for e in fixed_loki.entries()] == [line(0), line(2)]


def test_the_client_fails_the_run_at_finish_when_loki_accepted_none_of_its_entries(fixed_loki: LokiDouble) -> None:
    fixed_loki.reject_matching("entry")
    client = LokiClient(fixed_loki.url)
    client.send("", batch_of(2))
    with pytest.raises(PushError, match="accepted none of the 2 entries"):
        client.finish()
    client.close()


def test_a_stopped_client_sends_nothing_more(fixed_loki: LokiDouble) -> None:
    client = LokiClient(fixed_loki.url)
    client.stop()
    with pytest.raises(PushError, match="stopped before Loki acknowledged"):
        client.send("", batch_of(1))
    client.close()
    assert fixed_loki.pushes == 0


# --- the dry-run sink --------------------------------------------------------------------------------------


def test_the_dry_run_sink_prints_each_stream_of_a_batch_as_one_json_line_and_counts_it() -> None:
    out = io.StringIO()
    sink = DryRunSink(out)
    batch = batch_of(2)
    batch.add(B, T0, "other", {"uid": "u"})
    sink.send("", batch)
    printed = out.getvalue().splitlines()
    assert [json.loads(p) for p in printed] == batch.stream_objects()
    assert (sink.stats.batches, sink.stats.lines, sink.stats.bytes_raw) == (1, 3, sum(map(len, printed)))


def test_a_dry_run_goes_through_the_same_pipeline_batching_at_batch_bytes() -> None:
    out = io.StringIO()
    cfg = parse(["run", "--dry-run", "--batch-bytes", str(2 * ENTRY_SIZE)], env={})
    pusher = pusher_for(cfg, Deps(stdout=out))
    assert isinstance(pusher, Pusher) and isinstance(pusher.sink, DryRunSink)
    for i in range(5):
        pusher.add(A, T0 + i, line(i))
    pusher.flush()
    pusher.close()
    values = [[v[1] for v in json.loads(p)["values"]] for p in out.getvalue().splitlines()]
    assert values == [[line(0), line(1)], [line(2), line(3)], [line(4)]] and pusher.stats.batches == 3
