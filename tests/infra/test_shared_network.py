"""Departments share one network: a stack names another ORCA stack's network by reference."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra import guards
from tests.infra.harness import StackRun, end_date_in, run_stack, stack_file_config

NETWORK_STACK = "campus/orca/physics"


def biology_sharing(**changes: Any) -> dict[str, Any]:
    config = {**stack_file_config("biology"), "orca:network": {"stack": NETWORK_STACK}}
    config.update({f"orca:{key}": value for key, value in changes.items()})
    return config


@pytest.fixture(scope="module")
def shared(physics: StackRun) -> StackRun:
    return run_stack(
        biology_sharing(), stack="biology", stack_outputs={NETWORK_STACK: physics.outputs}
    )


def test_the_sharing_stack_creates_no_network_of_its_own(shared: StackRun) -> None:
    created = {r.type for r in shared.resources}
    for kind in ("vpc:Vpc", "subnet:Subnet", "natGateway:NatGateway", "vpcEndpoint:VpcEndpoint"):
        assert f"aws:ec2/{kind}" not in created
    reference = shared.one("pulumi:pulumi:StackReference")
    assert reference.inputs["name"] == NETWORK_STACK


def test_burst_instances_go_into_the_network_stacks_subnets(
    shared: StackRun, physics: StackRun
) -> None:
    subnets = physics.outputs["subnetIds"]
    assert shared.outputs["vpcId"] == physics.outputs["vpcId"]
    assert shared.outputs["subnetIds"] == subnets
    assert json.loads(shared.outputs["runtimeSettings"]["ORCA_SUBNET_IDS"]) == subnets
    # The department keeps a security group of its own, in the shared VPC.
    group = shared.one("aws:ec2/securityGroup:SecurityGroup")
    assert group.inputs["vpcId"] == physics.outputs["vpcId"]
    assert shared.outputs["securityGroupId"] == group.id != physics.outputs["securityGroupId"]


def test_shared_subnets_are_looked_up_and_hold_no_public_ip(
    shared: StackRun, physics: StackRun
) -> None:
    assert sorted(shared.looked_up_subnets) == sorted(physics.outputs["subnetIds"])
    assert guards.public_ips(shared.resources, shared.looked_up_subnets) == []


def test_a_shared_subnet_that_maps_public_ips_is_refused(physics: StackRun) -> None:
    public = physics.outputs["subnetIds"][1]
    with pytest.raises(Exception, match=re.escape(f"{public} maps public IPs on launch")) as e:
        run_stack(
            biology_sharing(),
            stack="biology",
            stack_outputs={NETWORK_STACK: physics.outputs},
            subnets={public: {"mapPublicIpOnLaunch": True}},
        )
    assert f"the subnetIds of orca:network.stack {NETWORK_STACK}: {public}" in str(e.value)


def test_a_reservation_outside_the_shared_subnets_zones_is_refused(physics: StackRun) -> None:
    reservation = {
        "instanceType": "c7i.4xlarge",
        "availabilityZone": "us-east-1c",
        "count": 1,
        "endDate": end_date_in(days=90),
    }
    with pytest.raises(
        Exception,
        match=re.escape("orca:capacityReservations[0].availabilityZone: us-east-1c has no subnet"),
    ):
        run_stack(
            biology_sharing(capacityReservations=[reservation]),
            stack="biology",
            stack_outputs={NETWORK_STACK: physics.outputs},
        )


def test_a_stack_cannot_share_its_own_network() -> None:
    with pytest.raises(Exception, match=re.escape("orca:network.stack: names this stack")):
        run_stack(biology_sharing(network={"stack": "biology"}), stack="biology")


def test_a_malformed_stack_name_is_refused_with_the_key() -> None:
    with pytest.raises(Exception, match=re.escape("orca:network.stack")):
        run_stack(biology_sharing(network={"stack": "not a stack"}), stack="biology")
