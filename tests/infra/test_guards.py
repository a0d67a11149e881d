"""The envelope never gives a burst instance a public IP, never stores data unencrypted, and
never reserves capacity without an end; and the checks would catch it if it did."""

from __future__ import annotations

import json
import re

import pytest

from tests.infra import guards, harness
from tests.infra.conftest import physics_with
from tests.infra.harness import RecordedResource, StackRun, end_date_in, run_stack

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
    assert guards.public_ips(edge.resources, edge.looked_up_subnets) == []


def test_every_adopted_subnet_is_looked_up_before_it_is_used() -> None:
    subnets = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    run = run_stack(
        physics_with(network={**ADOPTED, "subnetIds": subnets}, capacityReservations=None)
    )
    assert sorted(run.looked_up_subnets) == subnets
    assert guards.public_ips(run.resources, run.looked_up_subnets) == []


def test_adopted_subnet_that_maps_public_ips_is_refused_before_anything_is_created() -> None:
    public = "subnet-0123456789abcdef1"
    network = {**ADOPTED, "subnetIds": ["subnet-0123456789abcdef0", public]}
    with pytest.raises(Exception, match=re.escape("orca:network.subnetIds")) as caught:
        run_stack(
            physics_with(network=network, capacityReservations=None),
            subnets={public: {"mapPublicIpOnLaunch": True}},
        )
    assert f"{public} maps public IPs on launch" in str(caught.value)
    assert "subnet-0123456789abcdef0 maps" not in str(caught.value)
    assert harness.last_mocks is not None
    declared = [r.type for r in harness.last_mocks.resources]
    assert declared == ["pulumi:providers:aws"], "nothing but the provider may be declared"


def test_adopted_subnet_outside_the_vpc_is_refused() -> None:
    with pytest.raises(
        Exception, match=re.escape("is in vpc-0fedcba987654321f, not in orca:network.vpcId")
    ):
        run_stack(
            physics_with(network=ADOPTED, capacityReservations=None),
            subnets={ADOPTED["subnetIds"][0]: {"vpcId": "vpc-0fedcba987654321f"}},
        )


def test_reservation_in_a_zone_without_an_adopted_subnet_is_refused() -> None:
    reservation = {
        "instanceType": "p5.48xlarge",
        "availabilityZone": "us-east-1b",
        "count": 1,
        "endDate": end_date_in(200),
    }
    with pytest.raises(Exception, match=r"capacityReservations\[0\].availabilityZone"):
        run_stack(physics_with(network=ADOPTED, capacityReservations=[reservation]))


def test_launch_templates_leave_the_interface_and_its_group_to_the_request(
    example: StackRun,
) -> None:
    for template in example.of_type(guards.LAUNCH_TEMPLATE):
        assert "vpcSecurityGroupIds" not in template.inputs
        assert "securityGroupNames" not in template.inputs
        for interface in template.inputs.get("networkInterfaces") or []:
            assert str(interface.get("associatePublicIpAddress")).lower() == "false"
    # The group the templates no longer name reaches the runtime, which puts it in the request.
    settings = example.outputs["runtimeSettings"]
    assert json.loads(settings["ORCA_SECURITY_GROUP_IDS"]) == [example.outputs["securityGroupId"]]


def test_runtime_may_create_interfaces_only_without_a_public_ip(example: StackRun) -> None:
    policy = next(
        json.loads(r.inputs["policy"])
        for r in example.of_type("aws:iam/rolePolicy:RolePolicy")
        if "runtime" in r.name
    )
    interfaces = next(
        s for s in policy["Statement"] if s["Sid"] == "CreateDepartmentInterfacesWithoutPublicIps"
    )
    assert interfaces["Resource"].endswith(":network-interface/*")
    assert interfaces["Condition"]["Bool"] == {"ec2:AssociatePublicIpAddress": "false"}
    assert guards.public_interface_grants(policy) == []


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
        _resource(guards.LAUNCH_TEMPLATE, {"vpcSecurityGroupIds": ["sg-1"]}),
    ]
    adopted = {"subnet-1": {"mapPublicIpOnLaunch": True}}
    assert len(guards.public_ips(bad, adopted)) == 4


def test_the_checks_catch_a_runtime_policy_allowing_public_interfaces(physics: StackRun) -> None:
    role_policy = next(
        r for r in physics.of_type("aws:iam/rolePolicy:RolePolicy") if "runtime" in r.name
    )
    policy = json.loads(role_policy.inputs["policy"])
    for statement in policy["Statement"]:
        statement.get("Condition", {}).pop("Bool", None)
    loosened = RecordedResource(
        role_policy.type,
        role_policy.name,
        {**role_policy.inputs, "policy": json.dumps(policy)},
        True,
        "id",
        {},
    )
    assert guards.public_ips([loosened]) == [
        "statement CreateDepartmentInterfacesWithoutPublicIps lets RunInstances create "
        "interfaces with public IPs"
    ]


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
