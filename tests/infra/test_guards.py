"""The envelope never gives a burst instance a public IP, never stores data unencrypted, and
never reserves capacity without an end; and the checks would catch it if it did."""

from __future__ import annotations

import pytest

from tests.infra import guards
from tests.infra.conftest import physics_with
from tests.infra.harness import RecordedResource, StackRun, run_stack

ADOPTED = {"vpcId": "vpc-0123456789abcdef0", "subnetIds": ["subnet-0123456789abcdef0"]}


@pytest.fixture(
    scope="module",
    params=["adopted-network", "no-irsa", "no-reservations", "interface-endpoints-off"],
)
def edge(request: pytest.FixtureRequest) -> StackRun:
    changes = {
        "adopted-network": {"network": ADOPTED, "capacityReservations": None},
        "no-irsa": {"oidcIssuerUrl": None},
        "no-reservations": {"capacityReservations": None},
        "interface-endpoints-off": {
            "network": {"cidr": "10.70.0.0/22", "zones": ["us-east-1a", "us-east-1b"]}
        },
    }[request.param]
    return run_stack(physics_with(**changes))


def test_examples_give_no_burst_instance_a_public_ip(example: StackRun) -> None:
    assert guards.public_ips(example.resources) == []


def test_edge_configs_give_no_burst_instance_a_public_ip(edge: StackRun) -> None:
    assert guards.public_ips(edge.resources) == []


def test_examples_encrypt_every_volume_bucket_and_queue(example: StackRun) -> None:
    assert guards.unencrypted(example.resources) == []


def test_edge_configs_encrypt_every_volume_bucket_and_queue(edge: StackRun) -> None:
    assert guards.unencrypted(edge.resources) == []


def test_every_reservation_ends(example: StackRun) -> None:
    assert guards.open_ended_reservations(example.resources) == []


def _resource(type_: str, inputs: dict, outputs: dict | None = None) -> RecordedResource:
    return RecordedResource(type_, "bad", inputs, True, "id", outputs or {})


def test_the_checks_catch_a_public_subnet_and_a_public_interface() -> None:
    bad = [
        _resource(guards.SUBNET, {"mapPublicIpOnLaunch": True}),
        _resource(
            guards.LAUNCH_TEMPLATE, {"networkInterfaces": [{"associatePublicIpAddress": "true"}]}
        ),
    ]
    assert len(guards.public_ips(bad)) == 2


def test_the_checks_catch_unencrypted_storage() -> None:
    bad = [
        _resource(guards.LAUNCH_TEMPLATE, {"blockDeviceMappings": [{"ebs": {"volumeSize": 50}}]}),
        _resource(guards.VOLUME, {"size": 50}),
        _resource(guards.BUCKET, {}, {"bucket": "plain"}),
        _resource(guards.QUEUE, {}),
    ]
    assert len(guards.unencrypted(bad)) == 4


def test_the_checks_catch_an_open_ended_reservation() -> None:
    bad = [_resource(guards.RESERVATION, {"endDateType": "unlimited"})]
    assert guards.open_ended_reservations(bad) == ["reservation bad"]
