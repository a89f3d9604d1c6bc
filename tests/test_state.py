"""The checkpoint format and the three stores, each through its real backend over HTTP."""
from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from state import Checkpoint, CheckpointCorrupt, StoreConflict, StoreError, decode, encode, open_store
from state.configmap import LIMIT, ConfigMapStore
from state.file import FileStore
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
    store = FileStore(str(tmp_path / "sub" / "cp"))
    assert store.load() == (None, None)
    v1 = store.save(b"one", None)
    assert store.load() == (b"one", v1)
    with pytest.raises(StoreConflict):
        store.save(b"two", None)
    store.save(b"two", v1)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["cp"]  # no temp files left behind


@pytest.fixture
def cm_store(tmp_path: Path) -> Iterator[ConfigMapStore]:
    from kubernetes import config

    with KubeAPI() as api:
        path = api.write_kubeconfig(str(tmp_path / "kc"))
        yield ConfigMapStore(config.new_client_from_config(config_file=path, persist_config=False), "ns", "cp")


def test_configmap_store_creates_then_updates_with_resource_version(cm_store: ConfigMapStore) -> None:
    assert cm_store.load() == (None, None)
    v1 = cm_store.save(b"\x00one", None)
    assert cm_store.load() == (b"\x00one", v1)
    v2 = cm_store.save(b"two", v1)
    with pytest.raises(StoreConflict):
        cm_store.save(b"three", v1)
    assert cm_store.load() == (b"two", v2)


def test_configmap_store_reports_the_size_limit(cm_store: ConfigMapStore) -> None:
    with pytest.raises(StoreError, match="1048576"):
        cm_store.save(b"x" * (LIMIT + 1), None)


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
    with pytest.raises(StoreError, match="NoSuchBucket.*create the bucket"):
        store.load()
