"""The AWS side of the envelope, as the example stacks and edge configs declare it."""

from __future__ import annotations

import json

import pytest

from tests.infra.conftest import physics_with
from tests.infra.harness import AMIS, StackRun, run_stack, stack_file_config

DEPARTMENT_TAGS = {"department", "orca.research/department", "orca.research/cluster"}


def test_private_subnets_one_per_zone_and_never_public(physics: StackRun) -> None:
    private = [s for s in physics.of_type("aws:ec2/subnet:Subnet") if "private" in s.name]
    assert sorted(s.inputs["availabilityZone"] for s in private) == ["us-east-1a", "us-east-1b"]
    assert all(
        s.inputs["mapPublicIpOnLaunch"] is False for s in physics.of_type("aws:ec2/subnet:Subnet")
    )
    # Resources register concurrently, so match the output's order (the zones') by zone.
    by_zone = sorted(private, key=lambda s: s.inputs["availabilityZone"])
    assert physics.outputs["subnetIds"] == [s.id for s in by_zone]


def test_at_most_one_nat_gateway_in_the_public_subnet(example: StackRun) -> None:
    nat = example.one("aws:ec2/natGateway:NatGateway")
    public = [s for s in example.of_type("aws:ec2/subnet:Subnet") if s.name.endswith("-public")]
    assert nat.inputs["subnetId"] == public[0].id
    example.one("aws:ec2/internetGateway:InternetGateway")


def test_s3_gateway_endpoint_always_and_interface_endpoints_only_behind_the_flag(
    physics: StackRun, biology: StackRun
) -> None:
    def services(run: StackRun) -> dict[str, str]:
        return {
            e.inputs["serviceName"].rsplit(".", 1)[-1]
            if "ecr" not in e.inputs["serviceName"]
            else e.inputs["serviceName"].split("us-east-1.")[1]: e.inputs["vpcEndpointType"]
            for e in run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
        }

    assert services(biology) == {"s3": "Gateway"}
    assert services(physics) == {
        "s3": "Gateway",
        **{s: "Interface" for s in ("ec2", "sqs", "logs", "ecr.api", "ecr.dkr", "sts")},
    }


def test_security_group_has_no_ingress_unless_on_prem_is_configured(physics: StackRun) -> None:
    group = next(
        g for g in physics.of_type("aws:ec2/securityGroup:SecurityGroup") if "instances" in g.name
    )
    assert not group.inputs.get("ingress")

    network = {"cidr": "10.64.0.0/16", "zones": ["us-east-1a"], "onPremCidr": "192.168.0.0/16"}
    run = run_stack(physics_with(network=network, capacityReservations=None))
    group = next(
        g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup") if "instances" in g.name
    )
    assert [r["cidrBlocks"] for r in group.inputs["ingress"]] == [["192.168.0.0/16"]]


def test_adopted_network_creates_only_the_security_group() -> None:
    subnets = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    network = {"vpcId": "vpc-0123456789abcdef0", "subnetIds": subnets}
    run = run_stack(physics_with(network=network, capacityReservations=None))
    created = {r.type for r in run.resources}
    for kind in ("vpc:Vpc", "subnet:Subnet", "natGateway:NatGateway", "vpcEndpoint:VpcEndpoint"):
        assert f"aws:ec2/{kind}" not in created
    assert run.one("aws:ec2/securityGroup:SecurityGroup").inputs["vpcId"] == network["vpcId"]
    assert run.outputs["subnetIds"] == subnets
    assert json.loads(run.outputs["runtimeSettings"]["ORCA_SUBNET_IDS"]) == subnets


def test_launch_templates_per_kind_require_imdsv2_with_hop_limit_one(example: StackRun) -> None:
    templates = example.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert set(example.outputs["launchTemplateIds"]) == {"x86_64-gpu", "x86_64", "arm64"}
    assert sorted(t.inputs["imageId"] for t in templates) == sorted(AMIS.values())
    for template in templates:
        metadata = template.inputs["metadataOptions"]
        assert metadata["httpTokens"] == "required"
        assert metadata["httpPutResponseHopLimit"] == 1
        assert metadata["httpProtocolIpv6"] == "disabled"
        assert template.inputs["instanceInitiatedShutdownBehavior"] == "terminate"
        (root,) = template.inputs["blockDeviceMappings"]
        assert root["ebs"]["volumeType"] == "gp3" and root["ebs"]["encrypted"] == "true"
        assert "arn" in template.inputs["iamInstanceProfile"]
        # The runtime's request names the interface (no public IP) and its security group;
        # a template naming groups too would make EC2 refuse that request.
        assert "vpcSecurityGroupIds" not in template.inputs
        assert "securityGroupNames" not in template.inputs
        assert not any(
            str(i.get("associatePublicIpAddress")).lower() == "true"
            for i in template.inputs.get("networkInterfaces") or []
        )


def test_launch_templates_tag_instances_volumes_and_interfaces(example: StackRun) -> None:
    department = example.outputs["nodeName"].removeprefix("orca-")
    for template in example.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        specs = {s["resourceType"]: s["tags"] for s in template.inputs["tagSpecifications"]}
        assert set(specs) == {"instance", "volume", "network-interface"}
        for tags in specs.values():
            assert set(tags) >= DEPARTMENT_TAGS and "cost-center" in tags
            assert tags["department"] == tags["orca.research/department"] == department


def test_storage_is_encrypted_private_and_bounded(example: StackRun) -> None:
    key = example.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    log_group = example.one("aws:cloudwatch/logGroup:LogGroup")
    assert log_group.inputs["retentionInDays"] == 30

    encryption = example.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    (rule,) = encryption.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": key.outputs["arn"],
    }
    block = example.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(
        block[k] is True
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    (expiry,) = example.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    ).inputs["rules"]
    assert expiry["filter"] == {"prefix": "bundles/"} and expiry["expiration"] == {"days": 7}

    ledger = example.one("aws:dynamodb/table:Table").inputs
    assert ledger["billingMode"] == "PAY_PER_REQUEST"
    assert ledger["pointInTimeRecovery"] == {"enabled": True}


def test_interruption_rules_feed_the_queue_and_only_they_may_send(example: StackRun) -> None:
    rules = example.of_type("aws:cloudwatch/eventRule:EventRule")
    detail_types = {json.loads(r.inputs["eventPattern"])["detail-type"][0] for r in rules}
    assert detail_types == {
        "EC2 Spot Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification",
        "AWS Health Event",
    }
    queue = next(q for q in example.of_type("aws:sqs/queue:Queue") if "interruptions" in q.name)
    assert queue.inputs["sqsManagedSseEnabled"] is True
    targets = example.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert {t.inputs["arn"] for t in targets} == {queue.outputs["arn"]}

    (statement,) = json.loads(example.one("aws:sqs/queuePolicy:QueuePolicy").inputs["policy"])[
        "Statement"
    ]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == queue.outputs["arn"]
    assert sorted(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(
        r.outputs["arn"] for r in rules
    )


def test_reservations_are_targeted_limited_and_pooled(physics: StackRun) -> None:
    reservation = physics.one("aws:ec2/capacityReservation:CapacityReservation").inputs
    assert reservation["instanceMatchCriteria"] == "targeted"
    assert reservation["endDateType"] == "limited"
    written = stack_file_config("physics")["orca:capacityReservations"][0]["endDate"]
    assert reservation["endDate"] == written
    assert reservation["tenancy"] == "default" and reservation["instanceCount"] == 2
    group = physics.one("aws:resourcegroups/group:Group")
    assert {"type": "AWS::EC2::CapacityReservationPool"} in group.inputs["configurations"]
    member = physics.one("aws:resourcegroups/resource:Resource").inputs
    assert member["groupArn"] == group.outputs["arn"]
    assert physics.outputs["reservationGroupArn"] == group.outputs["arn"]


def test_no_reservations_means_no_capacity_resources(biology: StackRun) -> None:
    assert biology.of_type("aws:ec2/capacityReservation:CapacityReservation") == []
    assert biology.of_type("aws:resourcegroups/group:Group") == []
    assert biology.outputs["reservationGroupArn"] is None


@pytest.mark.parametrize(("stack", "limit"), [("physics", "100000"), ("biology", "4000")])
def test_budget_is_monthly_on_the_department_tag_with_three_alerts(
    stack: str, limit: str, request: pytest.FixtureRequest
) -> None:
    run: StackRun = request.getfixturevalue(stack)
    budget = run.one("aws:budgets/budget:Budget").inputs
    assert (budget["budgetType"], budget["timeUnit"], budget["limitAmount"]) == (
        "COST",
        "MONTHLY",
        limit,
    )
    assert budget["costFilters"] == [
        {"name": "TagKeyValue", "values": [f"user:department${stack}"]}
    ]
    alerts = {(n["notificationType"], n["threshold"]) for n in budget["notifications"]}
    assert alerts == {("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100)}
    assert run.outputs["budgetName"] == budget["name"]
