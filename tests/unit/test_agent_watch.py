"""The agent's safety nets: spot notices, the dead-man switch, and the time left to stop."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from orca.agent.watch import (
    RUNTIME_SILENT,
    SPOT_INTERRUPTED,
    DeadManSwitch,
    Ending,
    SpotWatch,
    Watch,
    short_duration,
    stop_grace,
)
from orca.aws.errors import ErrorKind, make_error
from orca.heartbeat import Heartbeat
from tests.unit.test_heartbeat import FakeStore

START = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)


def beat(at: datetime) -> Heartbeat:
    return Heartbeat(time=at, cluster="campus", department="physics", lease_seconds=900)


def test_containers_get_the_pod_grace_when_no_notice_hurries_them() -> None:
    assert stop_grace(30, START, None, reserve=20) == 30


def test_a_spot_notice_cuts_the_grace_to_finish_before_ec2_reclaims() -> None:
    notice = START + timedelta(minutes=2)

    assert stop_grace(30, START, notice, reserve=20) == 30
    assert stop_grace(600, START, notice, reserve=20) == 100
    assert stop_grace(600, notice - timedelta(seconds=10), notice, reserve=20) == 0


def test_durations_read_as_kubernetes_users_write_them() -> None:
    assert short_duration(timedelta(minutes=15)) == "15m"
    assert short_duration(timedelta(hours=1, minutes=30)) == "1h30m"
    assert short_duration(timedelta(seconds=45)) == "45s"
    assert short_duration(timedelta(0)) == "0s"


class NoticeHost:
    emulated = True

    def __init__(self) -> None:
        self.notice: datetime | None = None

    def instance_id(self) -> str:
        return "i-0123456789abcdef0"

    def private_ip(self) -> str | None:
        return None

    def spot_notice(self) -> datetime | None:
        return self.notice

    def shutdown(self, reason: str) -> None:
        raise AssertionError("the watch never powers off")


def test_a_spot_notice_ends_the_pod_as_spot_interrupted_saying_when() -> None:
    host = NoticeHost()
    watch = SpotWatch(host, "i-0123456789abcdef0")

    quiet = watch.check(START)
    host.notice = START + timedelta(minutes=2)
    ending = watch.check(START)

    assert quiet is None
    assert ending is not None
    assert ending.reason == SPOT_INTERRUPTED
    assert ending.finish_by == START + timedelta(minutes=2)
    assert "Spot interruption" in ending.message
    assert "at 2026-12-04T06:02:00Z" in ending.message
    assert "i-0123456789abcdef0" in ending.message


def test_the_switch_gives_a_runtime_that_never_wrote_a_whole_lease_from_the_start() -> None:
    switch = DeadManSwitch(FakeStore(), LEASE, started=START)

    assert switch.check(START + LEASE) is None
    ending = switch.check(START + LEASE + timedelta(minutes=1))

    assert ending is not None and ending.reason == RUNTIME_SILENT
    assert ending.finish_by is None
    assert "has not been heard from for 16m" in ending.message
    assert "no heartbeat since the agent started at 2026-12-04T06:00:00Z" in ending.message
    assert "so it does not bill unattended" in ending.message


def test_fresh_heartbeats_keep_the_pod_past_the_lease_and_silence_after_them_ends_it() -> None:
    store = FakeStore()
    switch = DeadManSwitch(store, LEASE, started=START)

    for minutes in range(0, 40, 2):
        store.written.append(beat(START + timedelta(minutes=minutes)))
        assert switch.check(START + timedelta(minutes=minutes, seconds=50)) is None
    last = START + timedelta(minutes=38)
    ending = switch.check(last + LEASE + timedelta(seconds=1))

    assert ending is not None and ending.reason == RUNTIME_SILENT
    assert "last heartbeat 2026-12-04T06:38:00Z" in ending.message


def test_s3_errors_count_as_silence_and_do_not_crash() -> None:
    class BrokenStore(FakeStore):
        def get(self) -> Heartbeat:
            raise make_error(ErrorKind.AUTH, "AccessDenied", code="AccessDenied")

    store = BrokenStore()
    store.written.append(beat(START))
    switch = DeadManSwitch(store, LEASE, started=START)

    assert switch.check(START + timedelta(minutes=5)) is None
    assert switch.check(START + LEASE + timedelta(seconds=1)) is not None


def test_an_older_heartbeat_read_later_does_not_move_the_last_one_back() -> None:
    store = FakeStore()
    switch = DeadManSwitch(store, LEASE, started=START)

    store.written.append(beat(START + timedelta(minutes=10)))
    switch.check(START + timedelta(minutes=10))
    store.written.append(beat(START + timedelta(minutes=1)))
    switch.check(START + timedelta(minutes=11))

    assert switch.last_heard == START + timedelta(minutes=10)


def test_the_watch_hands_over_the_first_ending_and_stops_checking() -> None:
    ended = threading.Event()
    endings: list[Ending] = []
    calls = {"quiet": 0, "ending": 0}

    def quiet(now: datetime) -> Ending | None:
        calls["quiet"] += 1
        return None

    def ending(now: datetime) -> Ending | None:
        calls["ending"] += 1
        return Ending(RUNTIME_SILENT, "silent") if calls["ending"] >= 3 else None

    def record(found: Ending) -> None:
        endings.append(found)
        ended.set()

    watch = Watch([(0.01, quiet), (0.01, ending)], clock=lambda: START, on_ending=record)
    watch.start()
    assert ended.wait(5)
    watch.stop()

    assert [e.reason for e in endings] == [RUNTIME_SILENT]
    assert watch.ending == endings[0]
    assert calls["ending"] == 3


def test_a_check_that_breaks_does_not_stop_the_others() -> None:
    ended = threading.Event()

    def broken(now: datetime) -> Ending | None:
        raise RuntimeError("IMDS client bug")

    def ending(now: datetime) -> Ending | None:
        return Ending(SPOT_INTERRUPTED, "reclaimed", finish_by=now)

    watch = Watch(
        [(0.01, broken), (0.05, ending)], clock=lambda: START, on_ending=lambda e: ended.set()
    )
    watch.start()
    assert ended.wait(5)
    watch.stop()
