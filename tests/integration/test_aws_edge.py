"""ORCA's AWS edge against the local AWS: real boto3 over HTTP to moto with ORCA's extensions."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from orca import tags
from orca.aws.bundles import BundleStore
from orca.aws.clients import AwsClients
from orca.aws.ec2 import Ec2, run_instances_params
from orca.aws.errors import (
    BadRequestError,
    CapacityError,
    IdempotencyMismatchError,
    NotFoundError,
    UnreachableError,
)
from orca.aws.logs import ContainerLogs, stream_name
from orca.aws.model import LaunchRequest, ReservationChoice, Subnet
from orca.aws.queue import StatusQueue
from orca.aws.ratelimit import Pacer
from orca.bundle import PodBundle
from orca.messages import ContainerReport, StatusReport
from orca_local.aws import LocalAwsProcess
from orca_local.envelope import Envelope, create_envelope
from tests.fakes.ec2 import FakeEc2

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.aws_fixtures"]


def launch_request(
    envelope: Envelope,
    *,
    department: str | None = None,
    pod: str = "lab/train",
    instance_type: str = "g6e.xlarge",
    zone_index: int = 0,
    template: str = "x86_64-gpu",
    **overrides: Any,
) -> LaunchRequest:
    namespace, name = pod.split("/")
    uid = str(uuid.uuid4())
    fields: dict[str, Any] = {
        "instance_type": instance_type,
        "subnet_id": envelope.subnet_ids[zone_index],
        "launch_template_id": envelope.launch_templates[template],
        "client_token": f"{uid}-1",
        "user_data": "#!/bin/bash\necho orca\n",
        "tags": tags.instance_tags(
            cluster=envelope.cluster,
            department=department or envelope.department,
            pod_namespace=namespace,
            pod_name=name,
            pod_uid=uid,
            attempt=1,
            cost_center="cc-42",
        ),
    }
    fields.update(overrides)
    return LaunchRequest(**fields)


def test_on_demand_launch_tags_instance_and_volume_and_keeps_user_data(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    req = launch_request(envelope, root_volume_gib=300)

    instance = ec2.run_instance(req)

    assert instance.instance_type == "g6e.xlarge"
    assert instance.availability_zone == envelope.subnet_zones[req.subnet_id]
    assert not instance.spot
    assert instance.tags[tags.POD] == "lab/train"
    client = aws_clients.ec2
    user_data = client.describe_instance_attribute(
        InstanceId=instance.instance_id, Attribute="userData"
    )["UserData"]["Value"]
    assert base64.b64decode(user_data).decode() == req.user_data
    behaviour = client.describe_instance_attribute(
        InstanceId=instance.instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )["InstanceInitiatedShutdownBehavior"]["Value"]
    assert behaviour == "terminate"
    volumes = client.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance.instance_id]}]
    )["Volumes"]
    root = next(v for v in volumes if v["Size"] == 300)
    assert (root["VolumeType"], root["Encrypted"]) == ("gp3", True)
    volume_tags = {t["Key"]: t["Value"] for t in root["Tags"]}
    assert volume_tags[tags.POD_UID] == req.tags[tags.POD_UID]
    assert volume_tags[tags.COST_CENTER] == "cc-42"


def test_spot_launch_is_a_spot_instance(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)

    instance = ec2.run_instance(
        launch_request(envelope, market="spot", max_spot_price=Decimal("1.8610"))
    )

    assert instance.spot
    assert ec2.get_instances([instance.instance_id])[0].spot


def test_same_client_token_returns_the_same_instance_even_after_termination(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    req = launch_request(envelope)

    first = ec2.run_instance(req)
    again = ec2.run_instance(req)
    ec2.terminate([first.instance_id])
    after_termination = ec2.run_instance(req)

    assert again.instance_id == first.instance_id
    assert after_termination.instance_id == first.instance_id
    # EC2 repeats its first answer to a repeated token; the instance itself is gone.
    assert [(i.instance_id, i.state) for i in ec2.get_instances([first.instance_id])] == [
        (first.instance_id, "terminated")
    ]


def test_client_token_reused_with_other_parameters_is_an_idempotency_mismatch(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    req = launch_request(envelope)
    ec2.run_instance(req)

    with pytest.raises(IdempotencyMismatchError) as caught:
        ec2.run_instance(launch_request(envelope, client_token=req.client_token))

    assert caught.value.code == "IdempotentParameterMismatch"


def test_injected_capacity_error_surfaces_as_capacity_error_naming_type_and_pod(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer, local_aws: LocalAwsProcess
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    zone = envelope.subnet_zones[envelope.subnet_ids[0]]
    local_aws.control.inject_capacity_error("p5.48xlarge", zone, times=1)
    req = launch_request(envelope, instance_type="p5.48xlarge", pod="lab/big")

    with pytest.raises(CapacityError) as caught:
        ec2.run_instance(req)
    retried = ec2.run_instance(req)

    assert str(caught.value).startswith(
        "launching p5.48xlarge for lab/big: InsufficientInstanceCapacity: "
    )
    assert caught.value.operation == "RunInstances"
    assert retried.instance_type == "p5.48xlarge"


def test_capacity_error_in_one_zone_leaves_the_other_zone_open(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer, local_aws: LocalAwsProcess
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    local_aws.control.inject_capacity_error(
        "p5.48xlarge", envelope.subnet_zones[envelope.subnet_ids[0]]
    )

    with pytest.raises(CapacityError):
        ec2.run_instance(launch_request(envelope, instance_type="p5.48xlarge"))
    other = ec2.run_instance(launch_request(envelope, instance_type="p5.48xlarge", zone_index=1))

    assert other.availability_zone == envelope.subnet_zones[envelope.subnet_ids[1]]


def test_list_instances_reads_every_page_of_one_filtered_describe(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer
) -> None:
    department = f"chem-{uuid.uuid4().hex[:6]}"
    requests: list[str] = []
    aws_clients.ec2.meta.events.register(
        "before-call.ec2.DescribeInstances", lambda **_: requests.append("DescribeInstances")
    )
    launcher = Ec2(aws_clients.ec2, fast_pacer)
    launched = [
        launcher.run_instance(launch_request(envelope, department=department)) for _ in range(7)
    ]
    launcher.run_instance(launch_request(envelope))  # another department's
    launcher.terminate([launched[0].instance_id])
    requests.clear()

    listed = Ec2(aws_clients.ec2, fast_pacer).list_instances(
        tags.ownership_filter(cluster=envelope.cluster, department=department)
    )
    one_page = len(requests)
    requests.clear()
    paged = Ec2(aws_clients.ec2, fast_pacer, page_size=5).list_instances(
        tags.ownership_filter(cluster=envelope.cluster, department=department)
    )

    expected = {i.instance_id for i in launched[1:]}
    assert {i.instance_id for i in listed} == expected
    assert one_page == 1
    assert {i.instance_id for i in paged} == expected
    assert len(requests) == 2


def test_terminate_takes_unknown_instances_as_already_gone(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    instance = ec2.run_instance(launch_request(envelope))

    ec2.terminate(["i-0123456789abcdef0", instance.instance_id, "i-0fedcba9876543210"])

    assert ec2.get_instances([instance.instance_id])[0].state == "terminated"


def test_get_instances_skips_ids_aws_does_not_know(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    instance = ec2.run_instance(launch_request(envelope))

    found = ec2.get_instances([instance.instance_id, "i-0123456789abcdef0"])

    assert [i.instance_id for i in found] == [instance.instance_id]


def test_shutdown_from_inside_terminates_an_instance_that_shuts_down_into_terminate(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer, local_aws: LocalAwsProcess
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    instance = ec2.run_instance(launch_request(envelope))

    state = local_aws.control.shutdown_from_inside(instance.instance_id)

    seen = ec2.get_instances([instance.instance_id])[0]
    assert state == seen.state == "terminated"
    assert seen.state_reason is not None
    assert "InstanceInitiatedShutdown" in seen.state_reason


def test_terminating_an_instance_twice_reports_it_ended_as_ec2_does(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer
) -> None:
    instance = Ec2(aws_clients.ec2, fast_pacer).run_instance(launch_request(envelope))
    ids = [instance.instance_id]

    aws_clients.ec2.terminate_instances(InstanceIds=ids)
    again = aws_clients.ec2.terminate_instances(InstanceIds=ids)["TerminatingInstances"]

    assert again[0]["CurrentState"]["Name"] in ("shutting-down", "terminated")


def test_an_instance_the_runtime_terminated_can_still_power_itself_off(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer, local_aws: LocalAwsProcess
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    instance = ec2.run_instance(launch_request(envelope))
    ec2.terminate([instance.instance_id])

    state = local_aws.control.shutdown_from_inside(instance.instance_id)

    assert state in ("shutting-down", "terminated")
    assert ec2.get_instances([instance.instance_id])[0].state == state


def test_check_access_passes_against_the_local_aws(
    aws_clients: AwsClients, fast_pacer: Pacer
) -> None:
    Ec2(aws_clients.ec2, fast_pacer).check_access()


def test_check_access_raises_unreachable_when_nothing_listens(
    clients_for: Callable[[str], AwsClients], fast_pacer: Pacer
) -> None:
    # Port 9 (discard) on loopback has no listener here.
    clients = clients_for("http://127.0.0.1:9")

    with pytest.raises(UnreachableError) as caught:
        Ec2(clients.ec2, fast_pacer).check_access()

    assert str(caught.value).startswith("checking access to EC2: AWS endpoint unreachable")


def test_status_queue_round_trip_skips_and_deletes_a_bad_message(
    aws_clients: AwsClients, envelope: Envelope, caplog: pytest.LogCaptureFixture
) -> None:
    # A queue of the test's own: agents of other tests report to the envelope's.
    url = aws_clients.sqs.create_queue(QueueName=f"status-round-trip-{uuid.uuid4().hex[:8]}")[
        "QueueUrl"
    ]
    queue = StatusQueue(aws_clients.sqs, url)
    report = StatusReport(
        pod_uid="uid-1",
        instance_id="i-0123456789abcdef0",
        sequence=3,
        sent_at=datetime.now(UTC),
        phase="Running",
        containers=[ContainerReport(name="main", image="busybox", state="running", ready=True)],
    )
    aws_clients.sqs.send_message(QueueUrl=url, MessageBody='{"nope": 1}')
    queue.send(report)

    with caplog.at_level(logging.WARNING, logger="orca.aws.queue"):
        received = _receive_until(queue, count=1)
    queue.delete([r.receipt_handle for r in received])

    assert [r.report for r in received] == [report]
    assert "not a status report" in caplog.text
    assert queue.receive(wait_seconds=0) == []


def _receive_until(queue: StatusQueue, count: int, attempts: int = 5) -> list[Any]:
    received: list[Any] = []
    for _ in range(attempts):
        received.extend(queue.receive(wait_seconds=1))
        if len(received) >= count:
            break
    return received


def test_bundle_put_get_delete(aws_clients: AwsClients, envelope: Envelope) -> None:
    store = BundleStore(aws_clients.s3, envelope.bundle_bucket)
    bundle = PodBundle(
        pod_uid="uid-7",
        namespace="lab",
        name="train",
        spec={"containers": [{"name": "main", "image": "busybox"}]},
        env={"main": {"TOKEN": "secret"}},
    )
    first = "arn:aws:ec2:us-east-1:123456789012:instance/i-0000000000000000a"
    second = "arn:aws:ec2:us-east-1:123456789012:instance/i-0000000000000000b"

    url = store.put(bundle, first)
    store.put(bundle, second)  # a later attempt of the same pod on another instance
    fetched = store.get("uid-7", first)
    store.delete(bundle.pod_uid)

    assert url == f"s3://{envelope.bundle_bucket}/bundles/uid-7/{first}.json"
    assert fetched == bundle
    for arn in (first, second):
        with pytest.raises(NotFoundError):
            store.get("uid-7", arn)


def test_logs_put_then_read_all_tail_and_since(aws_clients: AwsClients, envelope: Envelope) -> None:
    logs = ContainerLogs(aws_clients.logs, envelope.log_group)
    stream = stream_name("lab", "train", str(uuid.uuid4()), "main")
    start = datetime.now(UTC).replace(microsecond=0)
    lines = [(start + timedelta(seconds=i), f"line {i}") for i in range(5)]
    logs.ensure_stream(stream)
    logs.ensure_stream(stream)

    logs.put(stream, reversed(lines))

    assert [m for _, m in logs.read(stream)] == [m for _, m in lines]
    assert [m for _, m in logs.read(stream, tail=2)] == ["line 3", "line 4"]
    assert [m for _, m in logs.read(stream, since=start + timedelta(seconds=3))] == [
        "line 3",
        "line 4",
    ]
    assert logs.read(stream)[0].timestamp == start


def test_logs_follow_yields_new_lines_until_stopped(
    aws_clients: AwsClients, envelope: Envelope
) -> None:
    naps: list[float] = []
    logs = ContainerLogs(aws_clients.logs, envelope.log_group, sleep=naps.append)
    stream = stream_name("lab", "train", str(uuid.uuid4()), "main")
    logs.ensure_stream(stream)
    now = datetime.now(UTC)
    logs.put(stream, [(now, "first")])

    seen: list[str] = []
    for line in logs.follow(stream, stop=lambda: len(naps) >= 3, poll_seconds=0.5):
        seen.append(line.message)
        if line.message == "first":
            logs.put(stream, [(now + timedelta(seconds=1), "second")])

    assert seen == ["first", "second"]
    assert naps == [0.5, 0.5, 0.5]


def test_envelope_created_twice_has_the_same_ids(
    local_aws: LocalAwsProcess, envelope: Envelope, clients_for: Callable[[str], AwsClients]
) -> None:
    again = create_envelope(
        clients_for(local_aws.url),
        department=envelope.department,
        cluster=envelope.cluster,
        region=envelope.region,
    )

    assert again == envelope
    assert set(envelope.launch_templates) == {"x86_64-gpu", "x86_64", "arm64"}
    assert len(set(envelope.subnet_zones.values())) == 2


def test_envelope_launch_templates_require_imdsv2_with_hop_limit_one(
    aws_clients: AwsClients, envelope: Envelope
) -> None:
    versions = aws_clients.ec2.describe_launch_template_versions(
        LaunchTemplateId=envelope.launch_templates["x86_64-gpu"]
    )["LaunchTemplateVersions"]
    data = versions[0]["LaunchTemplateData"]
    gpu_ami = aws_clients.ssm.get_parameter(
        Name="/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
    )["Parameter"]["Value"]

    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert data["ImageId"] == gpu_ami


@dataclass
class Gateway:
    """An EC2 gateway and the way to take capacity away from it: real-over-moto or the fake."""

    ec2: Any
    no_capacity: Callable[[str, str], None]


@pytest.fixture(params=["local-aws", "fake"])
def gateway(
    request: pytest.FixtureRequest,
    aws_clients: AwsClients,
    envelope: Envelope,
    fast_pacer: Pacer,
    local_aws: LocalAwsProcess,
) -> Gateway:
    if request.param == "local-aws":
        return Gateway(Ec2(aws_clients.ec2, fast_pacer), local_aws.control.inject_capacity_error)
    fake = FakeEc2([Subnet(i, zone, envelope.vpc_id) for i, zone in envelope.subnet_zones.items()])
    return Gateway(fake, lambda instance_type, zone: fake.set_capacity(instance_type, zone, 0))


def test_fake_ec2_behaves_like_the_local_aws(gateway: Gateway, envelope: Envelope) -> None:
    department = f"bio-{uuid.uuid4().hex[:6]}"
    ec2 = gateway.ec2
    first = launch_request(envelope, department=department)
    second = launch_request(envelope, department=department, market="spot")
    owned = tags.ownership_filter(cluster=envelope.cluster, department=department)
    zone = envelope.subnet_zones[envelope.subnet_ids[1]]
    gateway.no_capacity("p5.48xlarge", zone)

    one = ec2.run_instance(first)
    assert ec2.run_instance(first).instance_id == one.instance_id
    with pytest.raises(IdempotencyMismatchError):
        ec2.run_instance(launch_request(envelope, client_token=first.client_token))
    two = ec2.run_instance(second)
    with pytest.raises(CapacityError, match=r"^launching p5\.48xlarge for lab/train: Insuff"):
        ec2.run_instance(launch_request(envelope, instance_type="p5.48xlarge", zone_index=1))
    ec2.terminate([one.instance_id, "i-0123456789abcdef0"])

    assert two.spot and not one.spot
    assert [i.instance_id for i in ec2.list_instances(owned)] == [two.instance_id]
    assert [(i.instance_id, i.state) for i in ec2.get_instances([one.instance_id, "i-0"])] == [
        (one.instance_id, "terminated")
    ]
    assert [s.availability_zone for s in ec2.describe_subnets([envelope.subnet_ids[1]])] == [zone]
    ec2.check_access()


def test_launch_never_asks_for_a_public_ip_and_names_the_security_groups(
    aws_clients: AwsClients, envelope: Envelope
) -> None:
    request = LaunchRequest(
        instance_type="m7i.large",
        subnet_id=envelope.subnet_ids[0],
        launch_template_id=envelope.launch_templates["x86_64"],
        client_token=f"no-public-ip-{uuid.uuid4().hex[:8]}",
        user_data="#!/bin/sh\n",
        tags={"orca.research/department": "physics"},
        security_group_ids=(envelope.security_group_id,),
    )

    instance = Ec2(aws_clients.ec2).run_instance(request)

    [interface] = run_instances_params(request)["NetworkInterfaces"]
    assert interface["AssociatePublicIpAddress"] is False
    described = aws_clients.ec2.describe_instances(InstanceIds=[instance.instance_id])
    raw = described["Reservations"][0]["Instances"][0]
    assert "PublicIpAddress" not in raw
    assert raw["SubnetId"] == envelope.subnet_ids[0]
    [attached] = raw["NetworkInterfaces"]
    assert [g["GroupId"] for g in attached["Groups"]] == [envelope.security_group_id]


# Capacity reservations (extension (e) of the local AWS).


def _reservation_id() -> str:
    return "cr-" + uuid.uuid4().hex[:17]


def _group_arn() -> str:
    return f"arn:aws:resource-groups:us-east-1:123456789012:group/pool-{uuid.uuid4().hex[:8]}"


def test_a_group_launch_goes_into_the_group_reservation_matching_type_and_zone(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer, local_aws: LocalAwsProcess
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    zone = envelope.subnet_zones[envelope.subnet_ids[0]]
    other_zone = envelope.subnet_zones[envelope.subnet_ids[1]]
    group = _group_arn()
    matching, wrong_type, wrong_zone, outside = (_reservation_id() for _ in range(4))
    control = local_aws.control
    control.define_capacity_reservation(wrong_type, "g6e.xlarge", zone, 4, group)
    control.define_capacity_reservation(wrong_zone, "p5.48xlarge", other_zone, 4, group)
    control.define_capacity_reservation(matching, "p5.48xlarge", zone, 2, group)
    control.define_capacity_reservation(outside, "p5.48xlarge", zone, 4)
    req = launch_request(
        envelope, instance_type="p5.48xlarge", reservation=ReservationChoice.group(group)
    )

    instance = ec2.run_instance(req)

    assert instance.capacity_reservation_id == matching
    described = aws_clients.ec2.describe_instances(InstanceIds=[instance.instance_id])
    assert described["Reservations"][0]["Instances"][0]["CapacityReservationId"] == matching
    held = {r["id"]: r["instanceIds"] for r in control.capacity_reservations()}
    assert held == {matching: [instance.instance_id], wrong_type: [], wrong_zone: [], outside: []}


def test_a_full_reservation_is_a_capacity_error_until_its_instance_terminates(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer, local_aws: LocalAwsProcess
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    zone = envelope.subnet_zones[envelope.subnet_ids[0]]
    reservation = _reservation_id()
    local_aws.control.define_capacity_reservation(reservation, "p5.48xlarge", zone, 1)
    target = ReservationChoice.reservation(reservation)

    def launch() -> Any:
        return ec2.run_instance(
            launch_request(
                envelope, instance_type="p5.48xlarge", pod="lab/reserved", reservation=target
            )
        )

    first = launch()
    with pytest.raises(CapacityError) as caught:
        launch()
    ec2.terminate([first.instance_id])
    again = launch()

    assert first.capacity_reservation_id == again.capacity_reservation_id == reservation
    assert caught.value.code == "ReservationCapacityExceeded"
    assert str(caught.value).startswith(
        "launching p5.48xlarge for lab/reserved: ReservationCapacityExceeded: "
        "The requested reservation does not have sufficient compatible and available capacity"
    )
    [listed] = [r for r in local_aws.control.capacity_reservations() if r["id"] == reservation]
    assert listed["instanceIds"] == [again.instance_id]


def test_a_targeted_launch_outside_the_reservation_zone_or_type_finds_no_capacity(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer, local_aws: LocalAwsProcess
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    zone = envelope.subnet_zones[envelope.subnet_ids[0]]
    reservation, group = _reservation_id(), _group_arn()
    local_aws.control.define_capacity_reservation(reservation, "p5.48xlarge", zone, 4, group)

    for req in (
        launch_request(
            envelope,
            instance_type="p5.48xlarge",
            zone_index=1,
            reservation=ReservationChoice.reservation(reservation),
        ),
        launch_request(
            envelope, instance_type="g6e.xlarge", reservation=ReservationChoice.group(group)
        ),
        launch_request(
            envelope, instance_type="p5.48xlarge", reservation=ReservationChoice.group(_group_arn())
        ),
    ):
        with pytest.raises(CapacityError, match="ReservationCapacityExceeded"):
            ec2.run_instance(req)


def test_an_unknown_reservation_id_is_not_found(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    unknown = _reservation_id()
    req = launch_request(envelope, reservation=ReservationChoice.reservation(unknown))

    with pytest.raises(NotFoundError) as caught:
        ec2.run_instance(req)

    assert caught.value.code == "InvalidCapacityReservationId.NotFound"
    assert unknown in caught.value.aws_message


def test_avoiding_reservations_launches_outside_a_matching_one(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer, local_aws: LocalAwsProcess
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    zone = envelope.subnet_zones[envelope.subnet_ids[0]]
    reservation = _reservation_id()
    local_aws.control.define_capacity_reservation(reservation, "p5.48xlarge", zone, 1)

    avoiding = ec2.run_instance(
        launch_request(envelope, instance_type="p5.48xlarge", reservation=ReservationChoice("none"))
    )

    assert avoiding.capacity_reservation_id is None
    [listed] = [r for r in local_aws.control.capacity_reservations() if r["id"] == reservation]
    assert listed["instanceIds"] == []


def test_a_capacity_block_is_described_and_takes_capacity_block_launches_while_it_runs(
    aws_clients: AwsClients, envelope: Envelope, fast_pacer: Pacer, local_aws: LocalAwsProcess
) -> None:
    ec2 = Ec2(aws_clients.ec2, fast_pacer)
    zone = envelope.subnet_zones[envelope.subnet_ids[0]]
    now = datetime.now(UTC).replace(microsecond=0)
    running, later = _reservation_id(), _reservation_id()
    control = local_aws.control
    control.define_capacity_reservation(
        running,
        "p5.48xlarge",
        zone,
        1,
        capacity_block=(now - timedelta(hours=1), now + timedelta(days=1)),
    )
    control.define_capacity_reservation(
        later,
        "p5.48xlarge",
        zone,
        1,
        capacity_block=(now + timedelta(days=1), now + timedelta(days=2)),
    )
    target = ReservationChoice.reservation(running)

    def launch(market: str, reservation: ReservationChoice) -> Any:
        return ec2.run_instance(
            launch_request(
                envelope, instance_type="p5.48xlarge", market=market, reservation=reservation
            )
        )

    block = ec2.describe_capacity_reservation(running)
    with pytest.raises(BadRequestError) as on_demand_into_a_block:
        launch("on-demand", target)
    with pytest.raises(CapacityError):
        launch("capacity-block", ReservationChoice.reservation(later))  # not started yet
    instance = launch("capacity-block", target)

    assert (block.capacity_block, block.state, block.instance_type) == (
        True,
        "active",
        "p5.48xlarge",
    )
    assert block.end == now + timedelta(days=1) and block.available_count == 1
    assert ec2.describe_capacity_reservation(later).state == "scheduled"
    assert on_demand_into_a_block.value.code == "InvalidParameterCombination"
    assert instance.capacity_reservation_id == running
    assert ec2.describe_capacity_reservation(running).available_count == 0
    [listed] = ec2.get_instances([instance.instance_id])
    assert (listed.capacity_reservation_id, listed.spot) == (running, False)
    raw = aws_clients.ec2.describe_instances(InstanceIds=[instance.instance_id])
    assert raw["Reservations"][0]["Instances"][0]["InstanceLifecycle"] == "capacity-block"
