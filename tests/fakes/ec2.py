"""FakeEc2: a stateful stand-in for :class:`orca.aws.ec2.Ec2` in unit tests.

It keeps instances as EC2 does: ClientToken idempotency (the same token returns
the same instance even once terminated; other parameters with the same token
fail with IdempotentParameterMismatch), terminated instances still visible to
``get_instances`` but not to ``list_instances``, capacity pools per (instance
type, zone) that launches draw from and terminations give back. Tests inject
errors with :meth:`FakeEc2.fail_next`, read call counts from ``calls`` and move
instances through states with :meth:`FakeEc2.set_state`.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from orca.aws.errors import AwsError, error_for_code
from orca.aws.model import CapacityReservation, Instance, LaunchRequest, Subnet, instance_arn
from orca.tags import POD

ACCOUNT = "123456789012"

DEFAULT_SUBNETS = (
    Subnet("subnet-0000000000000000a", "us-east-1a", "vpc-00000000000000001"),
    Subnet("subnet-0000000000000000b", "us-east-1b", "vpc-00000000000000001"),
)


@dataclass
class _Failure:
    error: AwsError
    remaining: int | None  # None: until cleared


class FakeEc2:
    """The public methods of ``Ec2``, over state kept in memory."""

    def __init__(
        self,
        subnets: Sequence[Subnet] = DEFAULT_SUBNETS,
        *,
        launch_state: str = "pending",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.subnets = {subnet.subnet_id: subnet for subnet in subnets}
        self.launch_state = launch_state
        self.calls: Counter[str] = Counter()
        self._clock = clock
        self._instances: dict[str, Instance] = {}
        self._requests: dict[str, LaunchRequest] = {}
        self._tokens: dict[str, tuple[LaunchRequest, str]] = {}
        self._capacity: dict[tuple[str, str], int] = {}
        self.reservations: dict[str, CapacityReservation] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._ids = itertools.count(1)
        self._ips = itertools.count(10)
        self._lock = threading.RLock()

    # Test controls.

    def fail_next(self, operation: str, error: AwsError | str, times: int | None = 1) -> None:
        """Make the next ``times`` calls of ``operation`` fail (None: until cleared).

        ``error`` is an AwsError or an AWS error code ("RequestLimitExceeded"); a
        code becomes the error :mod:`orca.aws.errors` makes of it.
        """
        if isinstance(error, str):
            error = error_for_code(error, "injected by FakeEc2", operation=operation)
        with self._lock:
            self._failures.setdefault(operation, []).append(_Failure(error, times))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def set_capacity(self, instance_type: str, zone: str, count: int) -> None:
        """Limit how many instances of a type may run in a zone; unset pools are unlimited."""
        with self._lock:
            self._capacity[(instance_type, zone)] = count

    def set_state(self, instance_id: str, state: str, reason: str | None = None) -> Instance:
        """Move an instance to ``state`` as EC2 would (an interruption, a boot, a shutdown)."""
        with self._lock:
            instance = self._instances[instance_id]
            was_live = instance.state not in ("shutting-down", "terminated")
            instance = dataclasses.replace(instance, state=state, state_reason=reason)
            if was_live and state in ("shutting-down", "terminated"):
                # As EC2's StateTransitionReason gives it: to the second.
                ended = self._clock().replace(microsecond=0)
                instance = dataclasses.replace(instance, ended_at=ended)
            self._instances[instance_id] = instance
            if was_live and state in ("shutting-down", "terminated"):
                self._release(instance)
            return instance

    def instance(self, instance_id: str) -> Instance:
        with self._lock:
            return self._instances[instance_id]

    def all_instances(self) -> list[Instance]:
        with self._lock:
            return list(self._instances.values())

    def request_of(self, instance_id: str) -> LaunchRequest:
        """The launch request that started an instance."""
        with self._lock:
            return self._requests[instance_id]

    # The Ec2 interface.

    def run_instance(self, req: LaunchRequest) -> Instance:
        with self._lock:
            self._enter("RunInstances")
            context = f"launching {req.instance_type} for {req.tags.get(POD, 'an unknown pod')}"
            if req.client_token in self._tokens:
                first, instance_id = self._tokens[req.client_token]
                if dataclasses.replace(first, client_token="") != dataclasses.replace(
                    req, client_token=""
                ):
                    raise error_for_code(
                        "IdempotentParameterMismatch",
                        f"The client token '{req.client_token}' was already used with "
                        "different parameters.",
                        context=context,
                        operation="RunInstances",
                    )
                return self._instances[instance_id]

            subnet = self._subnet(req.subnet_id, context)
            pool = (req.instance_type, subnet.availability_zone)
            if self._capacity.get(pool, 1) <= 0:
                raise error_for_code(
                    "InsufficientInstanceCapacity",
                    f"We currently do not have sufficient {req.instance_type} capacity in the "
                    f"Availability Zone you requested ({subnet.availability_zone}).",
                    context=context,
                    operation="RunInstances",
                )
            if pool in self._capacity:
                self._capacity[pool] -= 1

            instance_id = f"i-{next(self._ids):017x}"
            instance = Instance(
                instance_id=instance_id,
                instance_type=req.instance_type,
                state=self.launch_state,
                availability_zone=subnet.availability_zone,
                launch_time=self._clock(),
                tags=dict(req.tags),
                private_ip=f"10.0.0.{next(self._ips) % 250 + 2}",
                spot=req.market == "spot",
                capacity_block=req.market == "capacity-block",
                capacity_reservation_id=req.reservation.reservation_id,
                arn=instance_arn("aws", "us-east-1", ACCOUNT, instance_id),
            )
            self._instances[instance.instance_id] = instance
            self._requests[instance.instance_id] = req
            self._tokens[req.client_token] = (req, instance.instance_id)
            return instance

    def describe_capacity_reservation(self, reservation_id: str) -> CapacityReservation:
        with self._lock:
            self._enter("DescribeCapacityReservations")
            if reservation_id not in self.reservations:
                raise error_for_code(
                    "InvalidCapacityReservationId.NotFound",
                    f"The capacity reservation ID '{reservation_id}' does not exist",
                    context=f"describing capacity reservation {reservation_id}",
                    operation="DescribeCapacityReservations",
                )
            return self.reservations[reservation_id]

    def terminate(self, instance_ids: Iterable[str]) -> None:
        ids = list(dict.fromkeys(instance_ids))
        with self._lock:
            for start in range(0, len(ids), 1000):
                self._enter("TerminateInstances")
                for instance_id in ids[start : start + 1000]:
                    # Unknown ids are already gone, as Ec2.terminate treats them.
                    if instance_id in self._instances:
                        self.set_state(instance_id, "terminated", "Client.UserInitiatedShutdown")

    def list_instances(
        self, tag_filter: Mapping[str, str], *, include_terminated: bool = False
    ) -> list[Instance]:
        with self._lock:
            self._enter("DescribeInstances")
            return [
                instance
                for instance in self._instances.values()
                if (include_terminated or instance.state != "terminated")
                and all(instance.tags.get(k) == v for k, v in tag_filter.items())
            ]

    def get_instances(self, instance_ids: Iterable[str]) -> list[Instance]:
        wanted = list(dict.fromkeys(instance_ids))
        with self._lock:
            self._enter("DescribeInstances")
            return [self._instances[i] for i in wanted if i in self._instances]

    def describe_subnets(self, subnet_ids: Sequence[str]) -> list[Subnet]:
        with self._lock:
            self._enter("DescribeSubnets")
            return [
                self._subnet(i, f"describing subnets {', '.join(subnet_ids)}") for i in subnet_ids
            ]

    def check_access(self) -> None:
        with self._lock:
            self._enter("DescribeAvailabilityZones")

    # Internals.

    def _enter(self, operation: str) -> None:
        self.calls[operation] += 1
        failures = self._failures.get(operation)
        if not failures:
            return
        failure = failures[0]
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining <= 0:
                failures.pop(0)
        raise failure.error

    def _subnet(self, subnet_id: str, context: str) -> Subnet:
        if subnet_id not in self.subnets:
            raise error_for_code(
                "InvalidSubnetID.NotFound",
                f"The subnet ID '{subnet_id}' does not exist",
                context=context,
            )
        return self.subnets[subnet_id]

    def _release(self, instance: Instance) -> None:
        pool = (instance.instance_type, instance.availability_zone)
        if pool in self._capacity:
            self._capacity[pool] += 1
