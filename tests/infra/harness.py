"""Run the real ``infra/__main__.py`` under Pulumi's mocks and record what it registers.

:func:`run_stack` sets the stack's configuration, installs :class:`RecordingMocks`, runs the
program as ``pulumi up`` would (not a preview, so every output is known) and returns each
registered resource with its inputs, the stack outputs and the warnings the program logged.
The policy-pack tests reuse it: the recorded resources are what a policy would be shown.

Pulumi's runtime settings, config and root stack are process-global, so every run resets
them first. Mocks deliver inputs as the engine would: camelCase keys, integers as floats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import runpy
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime
import yaml
from pulumi.runtime import settings as runtime_settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
MAIN = INFRA / "__main__.py"
ACCOUNT = "123456789012"
REGION = "us-east-1"
# What the public SSM parameters of the ECS-optimized AMIs answer, one image per kind.
AMIS = {
    "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id": (
        "ami-0a0a0a0a0a0a0a0a1"
    ),
    "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id": (
        "ami-0b0b0b0b0b0b0b0b2"
    ),
    "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id": (
        "ami-0c0c0c0c0c0c0c0c3"
    ),
}
# Pulumi marks a secret value on the wire with this key (and the value under "value").
SECRET_SIGNATURE = "4dabf18193072939515e22adb298388d"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"
# The keys Pulumi.yaml declares secret: Pulumi hands them to the program marked as secrets.
SECRET_KEYS = [
    "orca:kubeconfig",
    "orca:kubeletTlsCert",
    "orca:kubeletTlsKey",
    "orca:kubeletClientCa",
]

# EC2-style ids for the types whose ids the runtime's settings check.
_ID_PREFIXES = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt-",
    "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce-",
    "aws:ec2/capacityReservation:CapacityReservation": "cr-",
}


@dataclass(frozen=True)
class RecordedResource:
    """One resource as the engine was asked to register it."""

    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool
    id: str
    outputs: dict[str, Any]


@dataclass
class StackRun:
    resources: list[RecordedResource]
    outputs: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # What the lookups of an adopted network's subnets answered, by subnet id.
    looked_up_subnets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> RecordedResource:
        found = self.of_type(type_)
        assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
        return found[0]


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers registrations with plausible AWS outputs and records every one.

    Subnet lookups (an adopted network) answer a private subnet of ``vpc_id`` in the first
    zone of the region, changed per subnet id by ``subnets``. A StackReference reads the
    outputs ``stack_outputs`` holds for the stack it names.
    """

    def __init__(
        self,
        *,
        vpc_id: str | None = None,
        subnets: Mapping[str, Mapping[str, Any]] | None = None,
        stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.resources: list[RecordedResource] = []
        self.vpc_id = vpc_id
        self.subnets = dict(subnets or {})
        self.stack_outputs = dict(stack_outputs or {})
        self.looked_up_subnets: dict[str, dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        digest = hashlib.sha256(f"{args.typ}/{args.name}".encode()).hexdigest()[:17]
        id_ = _ID_PREFIXES.get(args.typ, "") + digest
        state = dict(args.inputs)
        module = args.typ.split(":")[1].split("/")[0] if ":" in args.typ else "x"
        state.setdefault("arn", f"arn:aws:{module}:{REGION}:{ACCOUNT}:{args.name}/{id_}")
        # Autonaming: an unnamed resource gets its logical name and a random suffix.
        state.setdefault("name", f"{args.name}-{digest[:7]}")
        if args.typ == "aws:sqs/queue:Queue":
            state["url"] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{state['name']}"
            state["arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{state['name']}"
        if args.typ == "aws:s3/bucket:Bucket":
            state.setdefault("bucket", f"{args.name}-{digest[:7]}")
            state["arn"] = f"arn:aws:s3:::{state['bucket']}"
            id_ = state["bucket"]
        if args.typ == "aws:cloudwatch/logGroup:LogGroup":
            state["arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{state['name']}"
            id_ = state["name"]
        if args.typ == "aws:resourcegroups/group:Group":
            state["arn"] = f"arn:aws:resource-groups:{REGION}:{ACCOUNT}:group/{state['name']}"
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = 1
        if args.typ == "aws:iam/accessKey:AccessKey":
            state["secret"] = "mock-secret-access-key"
        if args.typ == "pulumi:pulumi:StackReference":
            # Read, not created: its id is the referenced stack's name.
            id_ = args.inputs["name"]
            state["outputs"] = dict(self.stack_outputs.get(id_, {}))
            state["secretOutputNames"] = []
        self.resources.append(
            RecordedResource(args.typ, args.name, dict(args.inputs), bool(args.custom), id_, state)
        )
        return id_, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:ec2/getSubnet:getSubnet":
            subnet_id = args.args["id"]
            answer = self.looked_up_subnets[subnet_id] = {
                "id": subnet_id,
                "arn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/{subnet_id}",
                "vpcId": self.vpc_id,
                "availabilityZone": f"{REGION}a",
                "cidrBlock": "10.0.0.0/24",
                "mapPublicIpOnLaunch": False,
                "assignIpv6AddressOnCreation": False,
                "state": "available",
                **self.subnets.get(subnet_id, {}),
            }
            return answer
        if args.token == "aws:ssm/getParameter:getParameter":
            name = args.args["name"]
            value = AMIS[name]
            return {
                "id": name,
                "name": name,
                "value": value,
                "insecureValue": value,
                "type": "String",
                "arn": f"arn:aws:ssm:{REGION}::parameter{name}",
                "version": 1,
                "withDecryption": True,
            }
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "id": ACCOUNT,
                "accountId": ACCOUNT,
                "userId": "AIDAMOCK",
                "arn": f"arn:aws:iam::{ACCOUNT}:user/deployer",
            }
        if args.token == "aws:index/getPartition:getPartition":
            return {
                "id": "aws",
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
            }
        raise NotImplementedError(f"the mocks do not answer {args.token}")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# The day the example stacks' reservation end dates were written. The program refuses an end
# date in the past and the cost policies compare end dates with today, so tests read each
# example end date moved on by the days since: as far ahead of today as it was when written.
EXAMPLE_DATES_WRITTEN = date(2026, 12, 4)


def end_date_in(days: float) -> str:
    """A reservation end date ``days`` from now, as the stack files spell it (UTC, ``Z``)."""
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moved_on(end_date: str) -> str:
    days = max(0, (datetime.now(UTC).date() - EXAMPLE_DATES_WRITTEN).days)
    written = datetime.fromisoformat(end_date.replace("Z", "+00:00"))
    return (written + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def stack_file_config(stack: str) -> dict[str, Any]:
    """The ``config:`` of a committed ``Pulumi.<stack>.yaml``, plus the secret kubeconfig.

    Reservation end dates are moved on by the days since :data:`EXAMPLE_DATES_WRITTEN`.
    """
    document = yaml.safe_load((INFRA / f"Pulumi.{stack}.yaml").read_text())
    config = {**document["config"], "orca:kubeconfig": KUBECONFIG}
    reservations = config.get("orca:capacityReservations")
    if isinstance(reservations, list):
        config["orca:capacityReservations"] = [
            {**r, "endDate": _moved_on(r["endDate"])} if "endDate" in r else r for r in reservations
        ]
    return config


# The mocks of the latest run, so a test can see what a failed run registered (nothing).
last_mocks: RecordingMocks | None = None


def run_stack(
    stack_config: dict[str, Any],
    *,
    stack: str = "test",
    subnets: Mapping[str, Mapping[str, Any]] | None = None,
    stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
) -> StackRun:
    """Run the program for a stack whose config is ``stack_config`` (``orca:key`` -> value).

    ``subnets`` changes what the lookup of an adopted subnet answers, by subnet id;
    ``stack_outputs`` are the outputs of the stacks a StackReference may name, by name.
    """
    global last_mocks
    network = stack_config.get("orca:network")
    network = network if isinstance(network, dict) else {}
    shared = (stack_outputs or {}).get(network.get("stack", ""), {})
    vpc_id = network.get("vpcId") or shared.get("vpcId")
    mocks = last_mocks = RecordingMocks(vpc_id=vpc_id, subnets=subnets, stack_outputs=stack_outputs)
    collector = _Collect()
    logger = logging.getLogger(f"{__name__}.engine")
    logger.handlers[:] = [collector]
    logger.propagate = False

    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="orca", stack=stack, preview=False, logger=logger)
    # Pulumi hands structured values to the program as JSON text, and everything else as text.
    config = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in stack_config.items()
    }
    pulumi.runtime.set_all_config(config, [k for k in SECRET_KEYS if k in config])
    if str(INFRA) not in sys.path:
        sys.path.insert(0, str(INFRA))

    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        runpy.run_path(str(MAIN), run_name="__main__")
        root = runtime_settings.get_root_resource()
        exported = dict(getattr(root, "outputs", {}))
        return pulumi.Output.all(**exported).apply(outputs.update)

    program()
    return StackRun(
        resources=mocks.resources,
        outputs=outputs,
        warnings=collector.messages,
        looked_up_subnets=mocks.looked_up_subnets,
    )


def run_program(stack_config: dict[str, Any], *, stack: str = "test") -> list[RecordedResource]:
    """Every resource the program registers for ``stack_config``, with its inputs."""
    return run_stack(stack_config, stack=stack).resources
