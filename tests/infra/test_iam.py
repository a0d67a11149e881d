"""Who may do what: the IRSA trust, the runtime's least privilege, the instance role."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

from orca.aws.bundles import BundleStore
from tests.infra import guards
from tests.infra.conftest import physics_with
from tests.infra.harness import ACCOUNT, SECRET_SIGNATURE, StackRun, run_stack


def _policy(run: StackRun, type_: str, name_part: str, key: str = "policy") -> dict[str, Any]:
    found = next(r for r in run.of_type(type_) if name_part in r.name)
    return json.loads(found.inputs[key])


def _statement(document: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(s for s in document["Statement"] if s.get("Sid") == sid)


def test_runtime_role_trusts_exactly_one_service_account_for_sts(physics: StackRun) -> None:
    trust = _policy(physics, "aws:iam/role:Role", "runtime", "assumeRolePolicy")
    (statement,) = trust["Statement"]
    provider = physics.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert statement["Principal"] == {"Federated": provider.outputs["arn"]}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            "oidc.campus.example.edu:sub": "system:serviceaccount:orca-physics:orca-physics",
            "oidc.campus.example.edu:aud": "sts.amazonaws.com",
        }
    }
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]


def test_a_stack_naming_an_existing_oidc_provider_creates_none(biology: StackRun) -> None:
    assert biology.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    trust = _policy(biology, "aws:iam/role:Role", "runtime", "assumeRolePolicy")
    assert trust["Statement"][0]["Principal"]["Federated"].endswith(
        "oidc-provider/oidc.campus.example.edu"
    )


def test_runtime_launches_only_from_its_templates_into_its_subnets(physics: StackRun) -> None:
    policy = _policy(physics, "aws:iam/rolePolicy:RolePolicy", "runtime")
    templates = sorted(
        t.outputs["arn"] for t in physics.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    )
    assert sorted(_statement(policy, "LaunchFromTheStackTemplates")["Resource"]) == templates
    subnets = _statement(policy, "LaunchIntoTheStackSubnets")["Resource"]
    assert sorted(s.rsplit("/", 1)[1] for s in subnets if ":subnet/" in s) == sorted(
        physics.outputs["subnetIds"]
    )
    instances = _statement(policy, "CreateDepartmentInstancesFromTheStackTemplates")
    assert instances["Condition"]["StringEquals"] == {
        "aws:RequestTag/orca.research/department": "physics",
        "aws:RequestTag/orca.research/cluster": "campus",
        "aws:RequestTag/department": "physics",
    }
    assert sorted(instances["Condition"]["ArnEquals"]["ec2:LaunchTemplate"]) == templates


def test_runtime_ends_and_tags_only_department_instances(physics: StackRun) -> None:
    policy = _policy(physics, "aws:iam/rolePolicy:RolePolicy", "runtime")
    owned = {
        "ec2:ResourceTag/orca.research/department": "physics",
        "ec2:ResourceTag/orca.research/cluster": "campus",
    }
    for sid in ("EndOnlyDepartmentInstances", "TagOnlyDepartmentInstancesKeepingOwnership"):
        statement = _statement(policy, sid)
        assert statement["Resource"].endswith(":instance/*")
        assert statement["Condition"]["StringEquals"] == owned
    for s in policy["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if "ec2:TerminateInstances" in actions:
            assert "ec2:ResourceTag/orca.research/department" in s["Condition"]["StringEquals"]


def test_ownership_and_cost_tags_cannot_be_changed_after_launch(physics: StackRun) -> None:
    policy = _policy(physics, "aws:iam/rolePolicy:RolePolicy", "runtime")
    later = _statement(policy, "TagOnlyDepartmentInstancesKeepingOwnership")
    assert set(later["Condition"]["ForAllValues:StringNotEquals"]["aws:TagKeys"]) >= {
        "orca.research/department",
        "orca.research/cluster",
        "department",
        "cost-center",
    }
    on_launch = _statement(policy, "TagOnLaunch")
    assert on_launch["Condition"] == {"StringEquals": {"ec2:CreateAction": "RunInstances"}}
    assert guards.ownership_retags(policy) == []


@pytest.mark.parametrize(
    ("sid", "condition"),
    [
        ("TagOnLaunch", "StringEquals"),
        ("TagOnlyDepartmentInstancesKeepingOwnership", "ForAllValues:StringNotEquals"),
    ],
)
def test_a_tagging_grant_without_its_condition_is_caught(
    physics: StackRun, sid: str, condition: str
) -> None:
    policy = _policy(physics, "aws:iam/rolePolicy:RolePolicy", "runtime")
    del _statement(policy, sid)["Condition"][condition]
    assert guards.ownership_retags(policy) == [
        f"statement {sid} lets CreateTags rewrite ownership tags"
    ]


def test_every_launch_carries_the_department_cost_tag(physics: StackRun) -> None:
    policy = _policy(physics, "aws:iam/rolePolicy:RolePolicy", "runtime")
    assert guards.untagged_launches(policy, "physics") == []
    for sid in (
        "CreateDepartmentInstancesFromTheStackTemplates",
        "CreateDepartmentVolumes",
        "CreateDepartmentInterfacesWithoutPublicIps",
    ):
        assert (
            _statement(policy, sid)["Condition"]["StringEquals"]["aws:RequestTag/department"]
            == "physics"
        )

    del _statement(policy, "CreateDepartmentVolumes")["Condition"]["StringEquals"][
        "aws:RequestTag/department"
    ]
    assert guards.untagged_launches(policy, "physics") == [
        "statement CreateDepartmentVolumes creates a volume without the department cost tag"
    ]


def test_instances_launch_only_as_allowed_types(physics: StackRun) -> None:
    policy = _policy(physics, "aws:iam/rolePolicy:RolePolicy", "runtime")
    instances = _statement(policy, "CreateDepartmentInstancesFromTheStackTemplates")
    assert instances["Condition"]["StringLike"] == {
        "ec2:InstanceType": ["p5.*", "g6e.*", "c7i.4xlarge"]
    }


def test_any_type_allowed_means_no_instance_type_condition() -> None:
    run = run_stack(physics_with(allowedInstanceTypes=["*"], capacityReservations=None))
    policy = _policy(run, "aws:iam/rolePolicy:RolePolicy", "runtime")
    instances = _statement(policy, "CreateDepartmentInstancesFromTheStackTemplates")
    assert "StringLike" not in instances["Condition"]


def test_runtime_passes_only_the_instance_role_and_describe_is_its_only_wildcard(
    physics: StackRun,
) -> None:
    policy = _policy(physics, "aws:iam/rolePolicy:RolePolicy", "runtime")
    instance_role = next(r for r in physics.of_type("aws:iam/role:Role") if "instance" in r.name)
    assert _statement(policy, "PassOnlyTheInstanceRole")["Resource"] == instance_role.outputs["arn"]
    unscoped = [s["Sid"] for s in policy["Statement"] if s["Resource"] == "*"]
    assert unscoped == ["DescribeCannotBeScoped", "PricesCannotBeScoped"]
    assert _statement(policy, "WriteAndDeletePodBundles")["Resource"].endswith("/bundles/*")
    listing = _statement(policy, "ListPodBundles")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "bundles/*"}}


def test_instance_role_reads_bundles_writes_its_logs_and_reports(example: StackRun) -> None:
    policy = _policy(example, "aws:iam/rolePolicy:RolePolicy", "instance")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    bucket = example.one("aws:s3/bucket:Bucket").outputs["arn"]
    read = by_sid["ReadOnlyThisInstancesPodBundle"]
    assert read["Action"] == "s3:GetObject"
    # IAM resolves the variable per request to the calling instance's ARN; the runtime
    # stores each bundle under exactly that ARN.
    assert read["Resource"] == f"{bucket}/bundles/*/${{ec2:SourceInstanceARN}}.json"
    mine, other = (f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/i-0{n}" for n in "12")
    store = BundleStore(None, "")
    resolved = read["Resource"].replace("${ec2:SourceInstanceARN}", mine)
    assert resolved == f"{bucket}/{store.key('*', mine)}"
    assert fnmatch.fnmatchcase(f"{bucket}/{store.key('uid-1', mine)}", resolved)
    assert not fnmatch.fnmatchcase(f"{bucket}/{store.key('uid-2', other)}", resolved)
    assert not any(s["Action"] == "s3:ListBucket" for s in policy["Statement"])
    log_group = example.one("aws:cloudwatch/logGroup:LogGroup").outputs["arn"]
    assert by_sid["WriteContainerLogs"]["Resource"][0] == log_group
    status = next(q for q in example.of_type("aws:sqs/queue:Queue") if q.name.endswith("status"))
    assert by_sid["ReportStatus"]["Resource"] == status.outputs["arn"]
    assert by_sid["PullEcrImages"]["Resource"] == f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/*"
    assert "ecr:PutImage" not in by_sid["PullEcrImages"]["Action"]
    unscoped = [s["Sid"] for s in policy["Statement"] if s["Resource"] == "*"]
    assert unscoped == ["EcrSignInCannotBeScoped"]
    assert by_sid["EcrSignInCannotBeScoped"]["Action"] == "ecr:GetAuthorizationToken"


@pytest.fixture(scope="module")
def without_irsa() -> StackRun:
    return run_stack(physics_with(oidcIssuerUrl=None))


def test_without_irsa_the_runtime_gets_a_key_in_a_secret_flagged_as_weaker(
    without_irsa: StackRun,
) -> None:
    assert without_irsa.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    user = without_irsa.one("aws:iam/user:User")
    key = without_irsa.one("aws:iam/accessKey:AccessKey")
    assert key.inputs["user"] == user.outputs["name"]
    secret = without_irsa.one("kubernetes:core/v1:Secret")
    data = secret.inputs["stringData"]
    assert SECRET_SIGNATURE in data, "the access key must stay a Pulumi secret"
    assert set(data["value"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert without_irsa.outputs["runtimeRoleArn"] is None
    assert "weaker" in without_irsa.outputs["runtimeCredentials"]
    assert any("weaker option" in w for w in without_irsa.warnings)

    policy = json.loads(without_irsa.one("aws:iam/userPolicy:UserPolicy").inputs["policy"])
    assert _statement(policy, "PassOnlyTheInstanceRole")


def test_with_irsa_no_static_credentials_exist(physics: StackRun) -> None:
    assert physics.of_type("aws:iam/accessKey:AccessKey") == []
    assert physics.of_type("kubernetes:core/v1:Secret") == []
    assert physics.outputs["runtimeCredentials"] == "irsa"
    assert physics.warnings == []


def test_runtime_writes_only_its_own_heartbeat_and_instances_only_read_it(
    physics: StackRun,
) -> None:
    runtime = _policy(physics, "aws:iam/rolePolicy:RolePolicy", "runtime")
    instance = _policy(physics, "aws:iam/rolePolicy:RolePolicy", "instance")
    bucket = physics.one("aws:s3/bucket:Bucket").outputs["arn"]
    heartbeat = f"{bucket}/heartbeats/campus/physics.json"

    write = _statement(runtime, "WriteTheRuntimeHeartbeat")
    read = _statement(instance, "ReadTheRuntimeHeartbeat")

    assert (write["Action"], write["Resource"]) == ("s3:PutObject", heartbeat)
    assert (read["Action"], read["Resource"]) == ("s3:GetObject", heartbeat)
    # Nothing else reaches the heartbeats: the bundle grants stop at bundles/.
    for document in (runtime, instance):
        s3 = [s for s in document["Statement"] if "s3:" in json.dumps(s["Action"])]
        assert {s["Resource"] for s in s3} <= {
            bucket,  # listing, under bundles/ only
            f"{bucket}/bundles/*",
            f"{bucket}/bundles/*/${{ec2:SourceInstanceARN}}.json",
            heartbeat,
        }
    assert not any("s3:PutObject" in json.dumps(s["Action"]) for s in instance["Statement"])


def test_runtime_reads_prices_and_nothing_else_unscoped(physics: StackRun) -> None:
    policy = _policy(physics, "aws:iam/rolePolicy:RolePolicy", "runtime")
    prices = _statement(policy, "PricesCannotBeScoped")
    assert prices["Action"] == ["pricing:GetProducts", "ec2:DescribeSpotPriceHistory"]
    assert "Condition" not in prices
    ledger = _statement(policy, "KeepTheCostLedger")
    assert ledger["Resource"] == physics.one("aws:dynamodb/table:Table").outputs["arn"]


def test_the_runtime_launches_only_into_capacity_blocks_tagged_as_the_departments(
    physics: StackRun,
) -> None:
    policy = _policy(physics, "aws:iam/rolePolicy:RolePolicy", "runtime")
    blocks = _statement(policy, "UseTheDepartmentsTaggedCapacityBlocks")

    assert blocks["Action"] == "ec2:RunInstances"
    assert blocks["Resource"] == f"arn:aws:ec2:us-east-1:{ACCOUNT}:capacity-reservation/*"
    assert blocks["Condition"] == {
        "StringEquals": {
            "ec2:ResourceTag/orca.research/department": "physics",
            "ec2:ResourceTag/orca.research/cluster": "campus",
        }
    }
