"""--own-events: the Events about the job's own CronJob, Jobs and Pods, against the API test server.

The test server holds Events, not CronJobs, Jobs or Pods, and the job never reads those objects:
it knows its own by kind, group and name in its namespace, so the Events are all a run can see.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from job.events import Event, decode_page
from job.filters import OwnEvents
from tests.conftest import NAMESPACE, Harness, legacy_event

CRON = "loki-event-sync"
RUN_JOB = f"{CRON}-29412345"  # minutes since the epoch, as the CronJob controller names its Jobs
MANUAL_POD = "backfill-manual-b4x9z"  # `kubectl create job backfill-manual --from=cronjob/...`: HOSTNAME


def event(name: str, kind: str, api_version: str, obj: str, type_: str = "Normal", ns: str = NAMESPACE,
          reason: str = "SuccessfulCreate") -> dict[str, Any]:
    e = legacy_event(name, ns=ns, kind=kind, type_=type_, reason=reason)
    e["involvedObject"].update(name=obj, apiVersion=api_version)
    return e


OWN_NORMAL = [
    event("cj.1", "CronJob", "batch/v1", CRON),
    event("cj.2", "CronJob", "batch/v1", CRON, reason="SawCompletedJob"),
    event("job.1", "Job", "batch/v1", RUN_JOB),
    event("job.2", "Job", "batch/v1", RUN_JOB, reason="Completed"),
    event("pod.1", "Pod", "v1", f"{RUN_JOB}-x7k2p", reason="Scheduled"),
    event("pod.2", "Pod", "v1", f"{RUN_JOB}-x7k2p", reason="Started"),
    event("manual.1", "Job", "batch/v1", "backfill-manual", reason="Completed"),
    event("manual.2", "Pod", "v1", MANUAL_POD, reason="Pulled"),
]
OWN_WARNING = [
    event("job.w", "Job", "batch/v1", RUN_JOB, "Warning", reason="BackoffLimitExceeded"),
    event("pod.w", "Pod", "v1", f"{RUN_JOB}-x7k2p", "Warning", reason="Failed"),
]
OTHERS = [
    event("user-cj.1", "CronJob", "batch/v1", "nightly"),  # another CronJob beside the job's
    event("user-pod.1", "Pod", "v1", "web-b4x9z"),
    event("short.1", "Job", "batch/v1", f"{CRON}-1"),  # not a scheduled run's name
    event("crd.1", "Job", "example.com/v1", RUN_JOB),  # a custom kind called Job
    event("elsewhere.1", "CronJob", "batch/v1", CRON, ns="default"),  # the same names in a user's namespace
    event("elsewhere.2", "Pod", "v1", f"{RUN_JOB}-x7k2p", ns="default"),
    event("elsewhere.3", "Pod", "v1", MANUAL_POD, ns="default"),
]


def shipped_names(h: Harness) -> Counter[str]:
    """The Event names Loki holds, with repeats (a line names the involved object; its uid, the Event)."""
    by_uid = {e["metadata"]["uid"]: e["metadata"]["name"] for e in h.kube.events()}
    return Counter(by_uid[json.loads(e.line)["uid"]] for e in h.loki.entries())


def names(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["metadata"]["name"] for e in events)


@pytest.fixture
def seeded(h: Harness) -> Harness:
    for e in OWN_NORMAL + OWN_WARNING + OTHERS:
        h.kube.put_event(e)
    return h


@pytest.mark.parametrize(("value", "ships"), [
    (None, OTHERS + OWN_WARNING),  # the default: warnings
    ("warnings", OTHERS + OWN_WARNING),
    ("all", OTHERS + OWN_WARNING + OWN_NORMAL),
    ("none", OTHERS),
])
def test_a_run_beside_its_own_cronjob_ships_every_other_event_once_and_of_its_own_what_the_flag_says(
        seeded: Harness, value: str | None, ships: list[dict[str, Any]]) -> None:
    extra = () if value is None else ("--own-events", value)
    assert seeded.run("run", *extra, env={"HOSTNAME": MANUAL_POD}) == 0, seeded.stderr
    assert shipped_names(seeded) == names(ships)
    total = len(OWN_NORMAL + OWN_WARNING + OTHERS)
    assert seeded.summary()["filtered"] == total - len(ships)
    # Filtered, not forgotten: the next run lists them again and ships nothing twice.
    assert seeded.run("run", *extra, env={"HOSTNAME": MANUAL_POD}) == 0
    assert shipped_names(seeded) == names(ships) and seeded.summary()["new"] == 0


def test_the_environment_variable_sets_the_value(seeded: Harness) -> None:
    assert seeded.run("run", env={"LOKI_EVENT_SYNC_OWN_EVENTS": "none", "HOSTNAME": MANUAL_POD}) == 0
    assert shipped_names(seeded) == names(OTHERS)


def test_a_renamed_cronjob_is_named_by_cronjob_name(h: Harness) -> None:
    h.kube.put_event(event("renamed.1", "CronJob", "batch/v1", "events-to-loki"))
    h.kube.put_event(event("renamed.2", "Pod", "v1", "events-to-loki-29412345-b4x9z"))
    h.kube.put_event(event("default-name.1", "CronJob", "batch/v1", CRON))
    assert h.run("run", "--cronjob-name", "events-to-loki") == 0
    assert shipped_names(h) == Counter(["default-name.1"])


def _full(e: dict[str, Any]) -> Event:
    (decoded, _), = decode_page(json.dumps({"items": [e]}).encode()).events
    return decoded


def test_a_long_cronjob_names_pods_are_known_by_the_cut_base_the_api_server_generates() -> None:
    cron = "c" * 52  # the longest CronJob name: its Job's name is 61, its Pods' base is cut to 58
    job = f"{cron}-29412345"
    pod = f"{job}-"[:58] + "x7k2p"
    own = OwnEvents(NAMESPACE, cron)
    assert not own.ships(_full(event("p.1", "Pod", "v1", pod)))
    assert own.ships(_full(event("p.2", "Pod", "v1", "d" * 58 + "x7k2p")))
    assert own.ships(_full(event("p.3", "Pod", "v1", f"{job}-[:58]aeiou")))  # not a generated suffix
