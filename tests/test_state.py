"""The checkpoint format and the three stores, each through its real backend over HTTP."""
from __future__ import annotations

import os
import random
import stat
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from state import Checkpoint, CheckpointCorrupt, StoreConflict, StoreError, decode, encode, open_store
from state.configmap import LIMIT, ConfigMapStore
from state.file import FileStore
from tests.htmlpage import HtmlPage
from tests.kubeapi import KubeAPI

W = 1_795_600_000


def ledger_of(n: int) -> dict[str, tuple[int, int]]:
    rnd = random.Random(n)
    return {str(uuid.UUID(int=rnd.getrandbits(128), version=4)): (rnd.choice([1, 1, 1, 2, 7, 61]),
                                                                  W - rnd.randint(0, 4200)) for _ in range(n)}


def test_checkpoint_round_trips_every_field() -> None:
    cp = Checkpoint(watermark_ns=W * 10**9 + 5, prune_horizon_ns=(W - 4000) * 10**9, ledger=ledger_of(100),
                    last_success_ns=W * 10**9, last_run={"new": 3})
    cp.ledger["not-a-uuid"] = (2, W - 1)
    cp.ledger[str(uuid.uuid4()).upper()] = (3, W)
    assert decode(encode(cp), "x") == cp


def test_the_run_history_round_trips_and_stays_a_few_hundred_bytes() -> None:
    from job.history import FIELDS
    from state.base import HISTORY_RUNS

    runs = [[2**40 + i, 999_999, 999_999, 99_999, 99_999, 99_999, 0, 99_999_999, 99_999, 3600, 3600][:len(FIELDS)]
            for i in range(HISTORY_RUNS)]
    cp = Checkpoint(ledger=ledger_of(10), history=runs)
    assert decode(encode(cp), "x").history == runs
    assert len(encode(cp)) - len(encode(Checkpoint(ledger=ledger_of(10)))) < 800


@pytest.mark.parametrize("history", [
    "not a list", [[1, 2], "a run"], [[1, True]], [[-1]], [[2**63]], [[1.5]], [[]], [list(range(13))],
    [[i] for i in range(100)],
], ids=["string", "a string run", "bool", "negative", "int64-overflow", "float", "empty-run", "too-long-run",
        "too-many-runs"])
def test_a_damaged_history_never_fails_the_checkpoint_it_is_dropped_to_its_valid_runs(history: Any) -> None:
    from state.base import HISTORY_RUNS
    from tests.conftest import patch_header

    cp = Checkpoint(ledger=ledger_of(10), last_run={"new": 3})
    got = decode(patch_header(encode(cp), history=history), "x")
    assert got.ledger == cp.ledger and got.last_run == cp.last_run
    valid = [r for r in history if isinstance(r, list) and r and all(type(v) is int and 0 <= v < 2**63 for v in r)
             and len(r) <= 12] if isinstance(history, list) else []
    assert got.history == valid[-HISTORY_RUNS:]


def test_a_v2_checkpoint_written_before_the_history_reads_with_none() -> None:
    import json
    import struct

    data = encode(Checkpoint(ledger=ledger_of(10), history=[[1, 2]]))
    _, version, hlen = struct.unpack_from(">4sBI", data)
    header = json.loads(data[9 : 9 + hlen])
    del header["history"]
    head = json.dumps(header).encode()
    old = struct.pack(">4sBI", b"LESC", version, len(head)) + head + data[9 + hlen :]
    assert version == 2 and decode(old, "x").history == [] and decode(old, "x").ledger == ledger_of(10)


def test_checkpoint_round_trips_across_uid_chunks_with_odd_uids_anywhere() -> None:
    """The encoder converts uids a chunk at a time: entries on every side of a chunk boundary, and a
    non-canonical uid sorted into a later chunk, come back exactly (the decoder builds the strings
    with slice copies, so a wrong offset would garble every uid)."""
    cp = Checkpoint(watermark_ns=W * 10**9, ledger=ledger_of(3 * 4096 + 7), last_run={"new": 1})
    assert decode(encode(cp), "x") == cp
    cp.ledger["ffffffff-not-a-uuid"] = (5, W - 3)  # sorts last: in the final chunk
    cp.ledger["00000000-0000-4000-8000-00000000000G"] = (2, W)  # 36 long, not hex: in the first chunk
    assert decode(encode(cp), "x") == cp


def test_decoded_ledger_holds_exact_entries_sharing_one_tuple_per_distinct_pair() -> None:
    """Decoded entries share one value tuple per distinct (count, time); each still reads its own."""
    led = {str(uuid.UUID(int=i + 1, version=4)): (1 + i % 3, W - (i % 5) * 60) for i in range(1000)}
    got = decode(encode(Checkpoint(watermark_ns=W * 10**9, ledger=led)), "x").ledger
    assert got == led and list(got) == sorted(led)
    assert len({id(v) for v in got.values()}) == 15  # 3 counts x 5 times


def test_fifty_thousand_entries_fit_the_configmap_limit() -> None:
    data = encode(Checkpoint(watermark_ns=W * 10**9, ledger=ledger_of(50_000)))
    assert len(data) < LIMIT - 4096


@pytest.mark.parametrize("data, says", [
    (b"LES", "truncated"),
    (b"NOPE\x01\x00\x00\x00\x02{}", "not a loki-event-sync checkpoint"),
    (b"LESC\x09\x00\x00\x00\x02{}", "format version 9"),
    (b"LESC\x01\x00\x00\x00\x05{}xyz", "corrupt"),
])
def test_damaged_checkpoints_are_named_errors(data: bytes, says: str) -> None:
    with pytest.raises(CheckpointCorrupt, match=says) as err:
        decode(data, "file://here")
    assert "file://here" in str(err.value) and "--reset-checkpoint" in str(err.value)


def test_truncated_body_of_a_real_checkpoint_is_corrupt() -> None:
    data = encode(Checkpoint(watermark_ns=W * 10**9, ledger=ledger_of(50)))
    with pytest.raises(CheckpointCorrupt):
        decode(data[:-7], "x")


def test_file_store_writes_atomically_and_refuses_a_stale_version(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "cp"))
    assert store.load() == (None, None)
    v1 = store.save(b"one", None)
    assert store.load() == (b"one", v1)
    with pytest.raises(StoreConflict):
        store.save(b"two", None)
    store.save(b"two", v1)
    # No temporary files left behind; the lock file stays (removing it would race a waiter).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cp.lock", "cp"]


def test_file_store_two_writers_from_one_version_never_both_succeed(tmp_path: Path) -> None:
    """Two runs without a Lease: whatever the interleaving, the second to save gets StoreConflict."""
    store = FileStore(str(tmp_path / "cp"))
    version: str | None = store.save(b"start", None)
    for round_ in range(40):
        gate = threading.Barrier(2)
        results: list[str] = []

        def save(payload: bytes, gate: threading.Barrier, results: list[str], version: str | None) -> None:
            gate.wait()
            try:
                FileStore(str(tmp_path / "cp")).save(payload, version)
                results.append("ok")
            except StoreConflict:
                results.append("conflict")

        threads = [threading.Thread(target=save, args=(f"{round_}-{i}".encode() * 5000, gate, results, version))
                   for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["conflict", "ok"], f"round {round_}: {results}"
        data, version = store.load()
        assert data in (f"{round_}-0".encode() * 5000, f"{round_}-1".encode() * 5000)


def test_file_url_keeps_question_marks_and_hashes_in_the_path(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/cp?v=1#a", kube=lambda: None)
    store.save(b"x", None)
    assert (tmp_path / "cp?v=1#a").read_bytes() == b"x"
    assert store.name == f"file://{tmp_path}/cp?v=1#a"


def test_file_store_writes_through_a_symlink_to_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "cp").symlink_to(real / "checkpoint")
    store = FileStore(str(tmp_path / "cp"))
    v1 = store.save(b"one", None)
    store.save(b"two", v1)
    assert (tmp_path / "cp").is_symlink()
    assert (real / "checkpoint").read_bytes() == b"two"


@pytest.mark.timeout(10)
def test_file_store_refuses_a_fifo_at_once_instead_of_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "cp")
    store = FileStore(str(tmp_path / "cp"))
    with pytest.raises(StoreError, match="is a FIFO, not a regular file"):
        store.load()
    with pytest.raises(StoreError, match="is a FIFO"):
        store.save(b"x", None)
    assert stat.S_ISFIFO(os.stat(tmp_path / "cp").st_mode)  # never replaced


def test_file_store_in_a_missing_directory_is_an_error_not_a_first_run(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "typo" / "cp"))
    with pytest.raises(StoreError, match=r"directory .*typo does not exist; create it"):
        store.load()
    with pytest.raises(StoreError, match="does not exist"):
        store.save(b"x", None)
    assert not (tmp_path / "typo").exists()


# --- ConfigMap through the kubernetes client against the API test server ---------------------------

OTHERS = {"labels": {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/name": "loki-event-sync"},
          "annotations": {"meta.helm.sh/release-name": "les", "meta.helm.sh/release-namespace": "ns",
                          "argocd.argoproj.io/tracking-id": "les:/ConfigMap:ns/cp",
                          "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"ConfigMap"}'}}


@pytest.fixture
def cm_api(tmp_path: Path) -> Iterator[tuple[KubeAPI, Any]]:
    from kubernetes import config

    with KubeAPI() as api:
        path = api.write_kubeconfig(str(tmp_path / "kc"))
        yield api, config.new_client_from_config(config_file=path, persist_config=False)


@pytest.fixture
def cm_store(cm_api: tuple[KubeAPI, Any]) -> ConfigMapStore:
    api, client = cm_api
    api.put_object("configmaps", {"metadata": {"name": "cp", "namespace": "ns", **OTHERS},
                                  "data": {"settings": "keep me"}})
    return ConfigMapStore(client, "ns", "cp")


def test_configmap_store_patches_its_key_with_resource_version_and_keeps_the_rest(
        cm_store: ConfigMapStore, cm_api: tuple[KubeAPI, Any]) -> None:
    api = cm_api[0]
    data, v0 = cm_store.load()
    assert data is None and v0  # present, no key yet: a first run, with a precondition all the same
    v1 = cm_store.save(b"\x00one", v0)
    assert cm_store.load() == (b"\x00one", v1)
    v2 = cm_store.save(b"two", v1)
    with pytest.raises(StoreConflict):
        cm_store.save(b"three", v1)
    assert cm_store.load() == (b"two", v2)
    obj = api.get_object("configmaps", "ns", "cp") or {}
    assert {k: obj["metadata"].get(k) for k in OTHERS} == OTHERS
    assert obj["data"] == {"settings": "keep me"}
    assert not [r for r in api.requests if r[0] in ("PUT", "POST")]


def test_configmap_store_save_without_version_refuses_a_key_someone_wrote(cm_store: ConfigMapStore) -> None:
    v1 = cm_store.save(b"first", None)  # the key is missing: the read version is the precondition
    with pytest.raises(StoreConflict):
        cm_store.save(b"second", None)
    assert cm_store.load() == (b"first", v1)


def test_configmap_store_never_creates_a_missing_configmap(cm_api: tuple[KubeAPI, Any]) -> None:
    api, client = cm_api
    store = ConfigMapStore(client, "ns", "missing")
    for call in (store.load, lambda: store.save(b"x", None), lambda: store.save(b"x", "1234")):
        with pytest.raises(StoreError, match=r"ConfigMap ns/missing does not exist .*kubectl -n ns create configmap "
                                             r"missing"):
            call()
    assert api.get_object("configmaps", "ns", "missing") is None


def test_configmap_store_hands_an_empty_key_to_the_decoder_instead_of_calling_it_absent(
        cm_api: tuple[KubeAPI, Any]) -> None:
    api, client = cm_api
    api.put_object("configmaps", {"metadata": {"name": "cp", "namespace": "ns"}, "binaryData": {"checkpoint": ""}})
    data, _ = ConfigMapStore(client, "ns", "cp").load()
    assert data == b""
    with pytest.raises(CheckpointCorrupt, match="truncated"):
        decode(data, "x")


def test_configmap_store_refuses_a_text_checkpoint_key(cm_api: tuple[KubeAPI, Any]) -> None:
    api, client = cm_api
    api.put_object("configmaps", {"metadata": {"name": "cp", "namespace": "ns"}, "data": {"checkpoint": "LESC"}})
    with pytest.raises(CheckpointCorrupt, match=r"holds data.checkpoint .text., not binaryData.checkpoint"):
        ConfigMapStore(client, "ns", "cp").load()


def test_configmap_store_leaves_room_for_the_other_keys(cm_store: ConfigMapStore) -> None:
    cm_store.load()
    assert cm_store.max_bytes == LIMIT - len("keep me")


def test_configmap_store_reports_the_size_limit(cm_store: ConfigMapStore) -> None:
    _, v0 = cm_store.load()
    with pytest.raises(StoreError, match="1048576"):
        cm_store.save(b"x" * (LIMIT + 1), v0)


@pytest.mark.parametrize("status", [502, 404, 200])
def test_configmap_store_behind_an_html_page_says_so_in_one_line(status: int, tmp_path: Path) -> None:
    from kubernetes import config

    with HtmlPage(status) as page:
        client = config.new_client_from_config(config_file=page.write_kubeconfig(str(tmp_path / "kc")),
                                               persist_config=False)
        with pytest.raises(StoreError) as err:
            ConfigMapStore(client, "ns", "cp").load()
    msg = str(err.value)
    assert "\n" not in msg and "<" not in msg and "does not exist" not in msg
    assert "HTML page titled '502 Bad Gateway'" in msg
    if status != 200:
        assert f"HTTP {status}" in msg


# --- S3 through boto3 against moto in server mode --------------------------------------------------


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, moto_url: str) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import boto3

    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_url).create_bucket(Bucket=bucket)
    return bucket


def test_s3_store_uses_conditional_writes(s3_env: str, moto_url: str) -> None:
    store = open_store(f"s3://{s3_env}/loki/cp", kube=lambda: None, s3_endpoint_url=moto_url)
    assert store.load() == (None, None)
    v1 = store.save(b"one", None)
    with pytest.raises(StoreConflict):
        store.save(b"again", None)  # IfNoneMatch: someone created it first
    v2 = store.save(b"two", v1)
    with pytest.raises(StoreConflict):
        store.save(b"three", v1)  # IfMatch on a stale ETag: 412
    assert store.load() == (b"two", v2)


def test_s3_missing_bucket_is_a_clear_error(s3_env: str, moto_url: str) -> None:
    store = open_store("s3://no-such-bucket-here/cp", kube=lambda: None, s3_endpoint_url=moto_url)
    with pytest.raises(StoreError, match=r"NoSuchBucket.*create the bucket"):
        store.load()


@pytest.mark.parametrize("status, says", [(404, "404: Not Found (not an S3 error answer"),
                                          (502, "502: Bad Gateway (not an S3 error answer"),
                                          (200, "the answer has no ETag, so it is not from S3")])
def test_s3_store_behind_an_html_page_is_an_error_never_an_absent_checkpoint(
        status: int, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                 ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_MAX_ATTEMPTS", "1")):
        monkeypatch.setenv(k, v)
    with HtmlPage(status) as page:
        store = open_store("s3://bucket/cp", kube=lambda: None, s3_endpoint_url=page.url)
        with pytest.raises(StoreError) as err:
            store.load()
    assert says in str(err.value) and "<" not in str(err.value)
