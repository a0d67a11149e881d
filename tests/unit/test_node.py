"""The virtual node: Ready follows whether AWS answers with valid credentials."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orca.aws.errors import AuthError, UnreachableError
from orca.node import NodeKeeper, node_object
from tests.unit.helpers import settings

START = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)


class RecordingNodeApi:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.lease_renewals: list[datetime] = []

    def register(self, node: dict[str, Any]) -> dict[str, Any]:
        self.statuses.append(node["status"])
        return {**node, "metadata": {**node["metadata"], "uid": "n-1"}}

    def patch_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.statuses.append(status)
        return {"status": status}

    def renew_lease(self, node: dict[str, Any], duration: int, now: datetime) -> None:
        self.lease_renewals.append(now)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def ready(status: dict[str, Any]) -> tuple[str, str]:
    condition = next(c for c in status["conditions"] if c["type"] == "Ready")
    return condition["status"], condition["reason"]


def test_node_turns_not_ready_when_credentials_fail_and_ready_again_after() -> None:
    api, clock = RecordingNodeApi(), Clock()
    failure: list[Exception] = []

    def check_aws() -> None:
        if failure:
            raise failure[0]

    keeper = NodeKeeper(settings(), api, check_aws, clock)  # type: ignore[arg-type]
    keeper.register()
    failure.append(AuthError("AuthFailure: expired", code="AuthFailure"))
    clock.now += timedelta(seconds=10)
    keeper.heartbeat()
    failure.clear()
    clock.now += timedelta(seconds=10)
    keeper.heartbeat()

    assert [ready(s) for s in api.statuses] == [
        ("True", "KubeletReady"),
        ("False", "AwsCredentialsInvalid"),
        ("True", "KubeletReady"),
    ]
    assert len(api.lease_renewals) == 3


def test_unreachable_aws_is_told_apart_from_bad_credentials() -> None:
    def check_aws() -> None:
        raise UnreachableError("could not connect to the endpoint", code="EndpointConnectionError")

    node_api: Any = RecordingNodeApi()
    keeper = NodeKeeper(settings(), node_api, check_aws, Clock())

    is_ready, reason, message = keeper.readiness()

    assert (is_ready, reason) == (False, "AwsUnreachable")
    assert "us-east-1" in message


def test_status_is_written_once_a_minute_when_nothing_changes() -> None:
    api, clock = RecordingNodeApi(), Clock()
    keeper = NodeKeeper(settings(), api, lambda: None, clock)  # type: ignore[arg-type]
    keeper.register()

    for _ in range(6):
        clock.now += timedelta(seconds=10)
        keeper.heartbeat()

    assert len(api.statuses) == 2  # at registration, then after 60 s
    assert len(api.lease_renewals) == 7


def test_node_advertises_the_department_limits_and_kubelet_endpoint() -> None:
    node = node_object(settings(limits={"gpus": 16, "max_pods": 40}), (True, "", ""), START)

    assert node["metadata"]["name"] == "orca-physics"
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "16"
    assert node["status"]["allocatable"]["pods"] == "40"
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
