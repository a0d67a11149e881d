"""The garbage collector's budget side: holds whose pod went while no runtime watched."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from orca.garbage_collection import GarbageCollector
from orca.ledger_records import HoldState, PodEntry
from orca.workqueue import WorkQueue
from tests.fakes.ec2 import FakeEc2


def held(uid: str, name: str) -> PodEntry:
    return PodEntry(
        month="2026-12",
        pod_uid=uid,
        namespace="lab",
        name=name,
        instance_type="m7i.large",
        market="on-demand",
        usd_per_hour=Decimal("0.1008"),
        state=HoldState.HELD,
        held_usd=Decimal("2.5"),
        spent_usd=Decimal(0),
        seconds=Decimal(0),
    )


class Holds:
    """Open holds as the ledger lists them, and the settles asked for."""

    def __init__(self, *entries: PodEntry) -> None:
        self.entries = list(entries)
        self.reads = 0
        self.settled: list[str] = []

    def held_pods(self) -> list[PodEntry]:
        self.reads += 1
        return list(self.entries)

    def settle(self, uid: str, pod: Any) -> None:
        assert pod is None
        self.settled.append(uid)


class Pods:
    def __init__(self, **existing: str) -> None:
        self.existing = existing  # name -> uid
        self.reads: list[str] = []

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(f"{namespace}/{name}")
        uid = self.existing.get(name)
        return None if uid is None else {"metadata": {"uid": uid}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def collector(
    holds: Holds, pods: Pods, clock: Clock, busy: Callable[[str], bool] = lambda uid: False
) -> GarbageCollector:
    return GarbageCollector(
        FakeEc2(),
        pods,
        0,
        clock=clock,
        holds=holds,
        holds_every_seconds=60,  # type: ignore[arg-type]
        busy=busy,
    )


def test_a_hold_whose_pod_is_gone_is_settled_on_the_second_pass_after_a_direct_read() -> None:
    holds, pods, clock = Holds(held("uid-gone", "train")), Pods(), Clock()
    gc = collector(holds, pods, clock)

    gc.sweep([], known_pod_uids=set())
    first = list(holds.settled)
    clock.now += 60
    gc.sweep([], known_pod_uids=set())

    assert first == []
    assert holds.settled == ["uid-gone"]
    assert pods.reads == ["lab/train"]


def test_holds_of_known_pods_and_of_pods_the_api_server_still_has_are_left_alone() -> None:
    entries = (held("uid-known", "a"), held("uid-cached-out", "b"), held("uid-c-deleted", "c"))
    # c exists under another UID: the hold's pod was deleted and a namesake created.
    holds, pods, clock = Holds(*entries), Pods(b="uid-cached-out", c="uid-other"), Clock()
    gc = collector(holds, pods, clock)

    for _ in range(3):
        gc.sweep([], known_pod_uids={"uid-known"})
        clock.now += 60

    # Asked again each pass until its hold is gone (settling waits for its instance to end).
    assert holds.settled == ["uid-c-deleted", "uid-c-deleted"]
    assert "lab/a" not in pods.reads


def test_the_hold_of_a_pod_a_worker_has_in_hand_waits_until_the_worker_is_done() -> None:
    holds, pods, clock = Holds(held("uid-launching", "train")), Pods(), Clock()
    queue = WorkQueue()
    queue.add("uid-launching")
    assert queue.get(timeout=0) == "uid-launching"  # a worker is mid-launch for it
    gc = collector(holds, pods, clock, busy=queue.in_progress)

    for _ in range(3):
        gc.sweep([], known_pod_uids=set())
        clock.now += 60
    waited = list(holds.settled)
    queue.done("uid-launching")
    gc.sweep([], known_pod_uids=set())

    assert waited == []
    assert holds.settled == ["uid-launching"]


def test_the_ledger_is_read_once_a_minute_not_on_every_instance_pass() -> None:
    holds, pods, clock = Holds(held("uid-gone", "train")), Pods(), Clock()
    gc = collector(holds, pods, clock)

    for _ in range(12):  # a minute of passes, every five seconds
        gc.sweep([], known_pod_uids=set())
        clock.now += 5

    assert holds.reads == 1
    assert holds.settled == []


def test_a_hold_that_cannot_be_settled_now_does_not_keep_the_others_waiting() -> None:
    class Busy(Holds):
        def settle(self, uid: str, pod: Any) -> None:
            if uid == "uid-busy":
                raise ConnectionError("the ledger is busy")
            super().settle(uid, pod)

    holds, pods, clock = Busy(held("uid-busy", "a"), held("uid-gone", "b")), Pods(), Clock()
    gc = collector(holds, pods, clock)

    for _ in range(3):
        gc.sweep([], known_pod_uids=set())
        clock.now += 60

    assert holds.settled == ["uid-gone", "uid-gone"]
