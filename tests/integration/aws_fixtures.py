"""Fixtures for tests against the local AWS (moto with ORCA's extensions) on loopback.

A test module uses them with ``pytest_plugins = ["tests.integration.aws_fixtures"]``
(and must not import this module itself: pytest could then not rewrite its asserts).

- ``local_aws``: one :class:`~orca_local.aws.LocalAwsProcess` per test session, on a
  free loopback port, in its own process so its state is its own; ``.url`` and
  ``.control`` (capacity errors, capacity reservations, shutdown from inside).
- ``aws_clients``: :class:`~orca.aws.clients.AwsClients` for it, with test
  credentials and a single attempt per call, so a failure shows at once.
- ``clients_for``: makes such clients for any endpoint URL.
- ``envelope``: a department's envelope created in it once per session; it names its
  cluster, department and region.
- ``fast_pacer``: a :class:`~orca.aws.ratelimit.Pacer` that never waits, for tests
  that launch many instances against the local AWS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import boto3
import pytest

from orca import tags
from orca.aws.bundles import BundleStore
from orca.aws.clients import AwsClients
from orca.aws.model import instance_arn
from orca.aws.ratelimit import BucketLimit, Pacer
from orca.bootstrap import AgentConfig, render_user_data
from orca_local.aws import LocalAwsProcess
from orca_local.envelope import Envelope, create_envelope

REGION = "us-east-1"
CLUSTER = "test-cluster"
DEPARTMENT = "physics"


def local_session(region: str = REGION) -> boto3.Session:
    """A boto3 session with the credentials moto accepts; nothing leaves loopback."""
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )


def local_clients(url: str, region: str = REGION) -> AwsClients:
    return AwsClients(
        region,
        endpoint_url=url,
        retry_mode="standard",
        max_attempts=1,
        connect_timeout=2,
        session=local_session(region),
    )


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAwsProcess]:
    with LocalAwsProcess("127.0.0.1", 0) as server:
        yield server


@pytest.fixture
def aws_clients(local_aws: LocalAwsProcess) -> Iterator[AwsClients]:
    yield local_clients(local_aws.url)
    local_aws.control.clear_capacity_errors()
    local_aws.control.clear_capacity_reservations()


@pytest.fixture
def clients_for() -> Callable[[str], AwsClients]:
    return local_clients


@pytest.fixture(scope="session")
def envelope(local_aws: LocalAwsProcess) -> Envelope:
    return create_envelope(
        local_clients(local_aws.url), department=DEPARTMENT, cluster=CLUSTER, region=REGION
    )


@pytest.fixture
def fast_pacer() -> Pacer:
    unlimited = BucketLimit(10_000, 10_000.0)
    return Pacer(
        {"RunInstances": unlimited, "TerminateInstances": unlimited, "Describe": unlimited}
    )


def launch(
    clients: AwsClients,
    envelope: Envelope,
    config: AgentConfig,
    *,
    bundle_stored_for: str,
    instance_type: str = "c7i.4xlarge",
) -> str:
    """RunInstances as the runtime does it: ORCA's tags, the bootstrap in user data, and
    then the pod's bundle stored for the new instance alone.

    The bundle comes from where a test stored it for a host of its own
    (``bundle_stored_for``, an instance ARN) and moves to the launched instance's ARN.
    """
    answer = clients.ec2.run_instances(
        MinCount=1,
        MaxCount=1,
        InstanceType=instance_type,
        LaunchTemplate={"LaunchTemplateId": envelope.launch_templates["x86_64"]},
        SubnetId=envelope.subnet_ids[0],
        UserData=render_user_data(config),
        InstanceInitiatedShutdownBehavior="terminate",
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": tags.MANAGED_BY, "Value": tags.MANAGED_BY_VALUE},
                    {"Key": tags.POD_UID, "Value": config.pod_uid},
                ],
            }
        ],
    )
    instance_id = str(answer["Instances"][0]["InstanceId"])
    store = BundleStore(clients.s3, config.bundle_bucket)
    bundle = store.get(config.pod_uid, bundle_stored_for)
    store.delete(config.pod_uid)
    arn = instance_arn(clients.ec2.meta.partition, envelope.region, answer["OwnerId"], instance_id)
    store.put(bundle, arn)
    return instance_id
