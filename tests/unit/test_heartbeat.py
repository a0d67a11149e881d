"""The runtime's heartbeat: the lease arithmetic both sides share, the setting, the writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orca.aws.errors import ErrorKind, make_error
from orca.bootstrap import AgentConfig, parse_user_data
from orca.catalog import Catalog
from orca.contract import resolve_launch
from orca.heartbeat import (
    Heartbeat,
    heartbeat_key,
    is_silent,
    read_interval,
    silence,
    write_interval,
)
from orca.heartbeat_writer import HeartbeatWriter
from orca.launching import Launcher
from orca.settings import SettingsError, load_settings
from tests.unit.helpers import case_documents, settings
from tests.unit.test_launching import DEADLINE, SUBNETS

START = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)


def test_silence_counts_from_the_agent_start_until_a_heartbeat_is_read() -> None:
    assert silence(START + timedelta(minutes=3), None, START) == timedelta(minutes=3)
    assert not is_silent(START + LEASE, None, START, LEASE)
    assert is_silent(START + LEASE + timedelta(seconds=1), None, START, LEASE)


def test_silence_counts_from_the_last_heartbeat_once_one_is_read() -> None:
    heard = START + timedelta(minutes=10)

    assert silence(START + timedelta(minutes=12), heard, START) == timedelta(minutes=2)
    assert not is_silent(START + timedelta(minutes=24), heard, START, LEASE)
    assert is_silent(START + timedelta(minutes=25, seconds=1), heard, START, LEASE)


def test_a_heartbeat_from_a_clock_ahead_counts_as_no_silence() -> None:
    assert silence(START, START + timedelta(seconds=30), START) == timedelta(0)


def test_the_runtime_writes_six_times_per_lease_and_agents_read_at_most_once_a_minute() -> None:
    assert write_interval(LEASE) == timedelta(minutes=2, seconds=30)
    assert read_interval(LEASE) == timedelta(minutes=1)
    # A short lease (tests) is read as often as it is written.
    assert read_interval(timedelta(seconds=6)) == timedelta(seconds=1)


def test_the_heartbeat_key_is_per_cluster_and_department() -> None:
    assert heartbeat_key("campus", "physics") == "heartbeats/campus/physics.json"


def test_heartbeat_body_round_trips_in_camel_case() -> None:
    beat = Heartbeat(time=START, cluster="campus", department="physics", lease_seconds=900)

    assert '"leaseSeconds":900' in beat.to_json()
    assert Heartbeat.from_json(beat.to_json()) == beat


def test_the_lease_defaults_to_15_minutes() -> None:
    assert settings().runtime_lease == LEASE


@pytest.mark.parametrize("value", ["PT4M", "P2D"])
def test_a_lease_too_short_for_a_runtime_restart_or_over_a_day_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    others = settings().model_dump(exclude={"runtime_lease"})
    monkeypatch.setenv("ORCA_RUNTIME_LEASE", value)

    with pytest.raises(SettingsError) as refused:
        load_settings(**others)

    assert "ORCA_RUNTIME_LEASE" in str(refused.value)


def test_the_launch_tells_the_agent_its_market_heartbeat_and_lease() -> None:
    [spot_pod] = case_documents("01-gpu-training-spot.yaml")
    [batch_pod] = case_documents("02-cpu-batch.yaml")
    s = settings(runtime_lease="PT20M")
    launcher = Launcher(s, ec2=None, subnets=SUBNETS)  # type: ignore[arg-type]
    zones = ["us-east-1a", "us-east-1b"]

    agents = [
        parse_user_data(
            launcher.plan(
                p,
                resolve_launch(p, s, Catalog.shipped(), zones),
                attempt=1,
                deadline=DEADLINE,
            ).request.user_data
        )
        for p in (spot_pod, batch_pod)
    ]

    assert [a.spot for a in agents] == [True, False]
    for agent in agents:
        assert agent.heartbeat_url == "s3://orca-physics-bundles/heartbeats/campus/physics.json"
        assert agent.runtime_lease == timedelta(minutes=20)


def test_an_agent_config_names_both_heartbeat_and_lease_or_neither() -> None:
    with pytest.raises(ValueError, match="go together"):
        AgentConfig(
            region="us-east-1",
            cluster="campus",
            department="physics",
            pod_uid="u",
            pod="default/p",
            bundle_bucket="orca-physics-bundles",
            status_queue_url="http://127.0.0.1/q",
            log_group="/orca/physics",
            deadline=DEADLINE,
            runtime_lease_seconds=900,
        )


class FakeStore:
    """The heartbeat object: what was written, or a failure to inject."""

    url = "s3://orca-physics-bundles/heartbeats/campus/physics.json"

    def __init__(self) -> None:
        self.written: list[Heartbeat] = []
        self.failing = False

    def put(self, heartbeat: Heartbeat) -> None:
        if self.failing:
            raise make_error(ErrorKind.UNREACHABLE, "S3 unreachable", code="Unreachable")
        self.written.append(heartbeat)

    def get(self) -> Heartbeat:
        if not self.written:
            raise make_error(ErrorKind.NOT_FOUND, "no heartbeat", code="NoSuchKey")
        return self.written[-1]


def test_the_writer_writes_the_runtime_time_and_survives_a_failed_write() -> None:
    store = FakeStore()
    now = [START]
    written: list[datetime] = []
    failures: list[int] = []
    writer = HeartbeatWriter(
        store,  # type: ignore[arg-type]
        cluster="campus",
        department="physics",
        lease=LEASE,
        clock=lambda: now[0],
        on_written=written.append,
        on_failed=lambda: failures.append(1),
    )

    assert writer.beat()
    store.failing = True
    now[0] += writer.interval
    assert not writer.beat()
    store.failing = False
    now[0] += writer.interval
    assert writer.beat()

    assert [h.time for h in store.written] == [START, START + 2 * writer.interval]
    assert store.written[0].lease_seconds == 900
    assert written == [START, START + 2 * writer.interval]
    assert failures == [1]
    assert writer.last_written == START + 2 * writer.interval
