"""The local AWS: moto in server mode, with the EC2 behaviour ORCA relies on added.

moto 5.2.5 speaks the real AWS wire protocols to real boto3, so the runtime runs
unchanged against it (``AWS_ENDPOINT_URL``). Where moto's EC2 lacks something
ORCA depends on, this module patches moto's EC2 *response handler* inside the
server process; the runtime is never told it is talking to a stand-in.

Extensions, each with its reason:

(a) ClientToken idempotency for RunInstances. ORCA's exactly-once launch rests
    on it: the token is derived from the pod UID and attempt, so a launch
    repeated after a crash returns the instance already started instead of a
    second one. As in EC2, the token is scoped to the account and region, the
    same token returns the same reservation even after its instance terminated,
    and the same token with other parameters fails with
    ``IdempotentParameterMismatch``. moto starts a new instance for every call.
(b) InstanceInitiatedShutdownBehavior honoured. moto records the attribute but
    nothing inside an instance can shut it down. :func:`shutdown_from_inside`
    does what powering off the OS does on EC2: with ``terminate`` the instance
    ends (``terminated``), with ``stop`` it stops; the state reason is EC2's
    ``Client.InstanceInitiatedShutdown``. The value is also taken from the
    launch template when the request omits it, as EC2 does.
(c) Capacity errors. EC2 answers ``InsufficientInstanceCapacity`` when a zone has
    no room for a type; moto never does. :func:`inject_capacity_error` makes
    RunInstances for an (instance type, zone) pair fail that way, a number of
    times or until cleared, so tests can drive fallbacks and waiting.
(d) A control endpoint for the extensions when the server is another process
    (``python -m orca_local.aws``): ``POST /_orca/capacity-errors``,
    ``DELETE /_orca/capacity-errors``, ``POST /_orca/instances/<id>/shutdown``, the
    capacity reservation calls of (e), the spot calls of (g) and the pricing calls of
    (i)-(k), used through :class:`LocalAwsControl`.
(e) On-Demand Capacity Reservations and RunInstances' ``CapacityReservationSpecification``.
    ORCA launches a pod that asks for ``capacity-reservation: group`` or a ``cr-`` id only
    into that capacity; moto implements no reservations and ignores the specification.
    :func:`define_capacity_reservation` defines one (id, instance type, zone, count and
    optionally the ARN of the reservation group it belongs to); ``POST``, ``GET`` and
    ``DELETE /_orca/capacity-reservations`` do the same over the control endpoint. As in
    EC2, a launch with the preference ``capacity-reservations-only`` and a target runs only
    in a reservation that is that one (or a member of that group), has the launch's type
    and the zone of its subnet, and has a free slot (its count minus its live instances);
    otherwise it fails with ``ReservationCapacityExceeded``, and an unknown id fails with
    ``InvalidCapacityReservationId.NotFound``. The instance records its reservation
    (``CapacityReservationId`` in DescribeInstances, which waits for a RunInstances in
    progress, as moto would otherwise list the instance half made), and its slot frees once it is
    shutting down or terminated. Reservations are not matched for ``open`` launches:
    ORCA's envelope makes only ``targeted`` reservations. A reservation defined with
    ``capacity_block=(start, end)`` is a Capacity Block for ML: it takes only launches of
    market type ``capacity-block`` (and they go nowhere else), only from its start until
    30 minutes before its end, when EC2 starts ending its instances (the emulator does not
    end them); their instances' ``InstanceLifecycle`` is ``capacity-block`` (moto says
    ``spot`` for any market). DescribeCapacityReservations (a 500 in moto) lists them, with EC2's
    ``ReservationType``, ``State`` (``scheduled``, ``active``, ``expired``), dates and
    free slots.
(f) Terminating an instance that is already shutting down or terminated. EC2 accepts it
    and reports the current state; moto deletes the instance's network interfaces a second
    time and fails with ``InvalidNetworkInterfaceID.NotFound``. That happens whenever an
    agent powers its instance off (b) and the runtime terminates it too, in either order.
(g) Spot interruptions. EC2 gives a spot instance about two minutes' notice (in its
    instance metadata) before it reclaims it; moto never interrupts anything.
    :func:`interrupt_spot_instance` records that EC2 has decided to reclaim a spot instance
    at a time (``POST /_orca/instances/<id>/spot-interruption``), and ``GET
    /_orca/spot-interruptions`` lists the notices, which the instance emulator serves to
    the instance's agent as IMDS would. :func:`reclaim_spot_instance` (``POST
    /_orca/instances/<id>/spot-reclaim``) is EC2 taking the instance at that time: it is
    terminated with EC2's state reason ``Server.SpotInstanceTermination``.
(h) DynamoDB requests isolated from each other. DynamoDB runs each write and each
    TransactWriteItems as one serializable step: a transaction's condition checks and
    writes happen together or not at all, and no other request sees or changes the items
    in between (a transaction that meets a concurrent one on the same item is cancelled
    with ``TransactionConflict``). moto's server handles requests on threads with no
    lock: its TransactWriteItems checks and writes item by item, and on a failed condition
    restores a copy of the whole table taken at its start, which undoes writes that other
    requests made meanwhile and can bring back the partial writes of another cancelled
    transaction. Measured: of forty concurrent transactions that each put a pod item and
    add to one conditional total, the total was right but up to four pod items of
    cancelled transactions remained. The cost ledger's budget holds rest on this
    isolation, so moto's DynamoDB handler serves one request at a time, which is one of
    the orders serializable isolation allows. moto's CancellationReasons (codes, messages,
    ``Item`` with ``ReturnValuesOnConditionCheckFailure``) match DynamoDB's and are kept.
(i)-(k) Prices, in :mod:`orca_local.aws_pricing`: (i) the Price List API's ``GetProducts``
    (moto has no ``pricing`` backend) answered in the Price List's document shape from the
    shipped table's prices, with settable prices; (j) a Price List API made to fail, for
    the runtime's fallback; (k) DescribeSpotPriceHistory from spot prices set per
    (type, zone), instead of moto's placeholder.

moto keeps its state in process-wide backends, so two :class:`LocalAws` servers
in one process share their state; the subprocess mode (:class:`LocalAwsProcess`)
gives each server its own, and is what the tests use.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from moto.core.common_types import TYPE_RESPONSE
from moto.core.responses import ActionResult
from moto.dynamodb.responses import DynamoHandler
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import Instance, InstanceState, StateReason
from moto.ec2.responses.instances import InstanceResponse
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from orca_local import aws_pricing

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_orca/"

_lock = threading.RLock()
_installed = False
_original_run_instances: Callable[[InstanceResponse], ActionResult] | None = None
_original_terminate: Callable[[Instance], InstanceState] | None = None
_original_dynamodb_call: Callable[[DynamoHandler], TYPE_RESPONSE] | None = None
# (h): one DynamoDB request at a time, as if each were DynamoDB's serializable step.
_dynamodb_lock = threading.Lock()


@dataclass
class _CapacityRule:
    instance_type: str
    zone: str | None  # None: every zone
    remaining: int | None  # None: until cleared


_capacity_rules: list[_CapacityRule] = []


@dataclass
class _Reservation:
    reservation_id: str
    instance_type: str
    zone: str
    count: int
    group_arn: str | None = None
    # "default" (an On-Demand Capacity Reservation) or "capacity-block", which runs from
    # start to end; EC2 ends a block's instances 30 minutes before its end.
    reservation_type: str = "default"
    start: datetime | None = None
    end: datetime | None = None

    def state(self, now: datetime) -> str:
        if self.reservation_type != "capacity-block":
            return "active"
        assert self.start is not None and self.end is not None
        if now < self.start:
            return "scheduled"
        return "active" if now < self.end else "expired"


_reservations: dict[str, _Reservation] = {}
# Spot instances EC2 has decided to reclaim, with their instance-action notices.
_spot_interruptions: dict[str, dict[str, str]] = {}
# A slot is taken while its instance is in one of these states.
_HOLDS_A_SLOT = ("pending", "running", "stopping", "stopped")
# EC2 starts ending a capacity block's instances this long before the block ends.
CAPACITY_BLOCK_ENDING = timedelta(minutes=30)


def install() -> None:
    """Patch moto's EC2 and DynamoDB in this process; safe to call more than once."""
    global _installed, _original_run_instances, _original_terminate, _original_dynamodb_call
    with _lock:
        if _installed:
            return
        _original_run_instances = InstanceResponse.run_instances
        InstanceResponse.run_instances = _run_instances  # type: ignore[method-assign]
        # moto lists a new instance before RunInstances has finished with it (its
        # reservation slot, its lifecycle); EC2 shows it only as the launch left it.
        _original_describe = InstanceResponse.describe_instances

        def _describe_instances(response: InstanceResponse) -> ActionResult:
            with _lock:
                return _original_describe(response)

        InstanceResponse.describe_instances = _describe_instances  # type: ignore[method-assign]
        # moto answers DescribeCapacityReservations with a 500; EC2Response finds it here.
        InstanceResponse.describe_capacity_reservations = (  # type: ignore[attr-defined]
            _describe_capacity_reservations
        )
        _original_terminate = Instance.terminate
        Instance.terminate = _terminate  # type: ignore[method-assign]
        _original_dynamodb_call = DynamoHandler.call_action
        DynamoHandler.call_action = _serialised_dynamodb_call  # type: ignore[method-assign]
        aws_pricing.install()
        _installed = True


def _serialised_dynamodb_call(self: DynamoHandler) -> TYPE_RESPONSE:
    assert _original_dynamodb_call is not None
    with _dynamodb_lock:
        return _original_dynamodb_call(self)


def _terminate(self: Instance) -> InstanceState:
    assert _original_terminate is not None
    # One lock for both callers: the API's TerminateInstances and a shutdown from inside.
    with _lock:
        if self._state.name in ("shutting-down", "terminated"):
            return copy.copy(self._state)
        return _original_terminate(self)


def inject_capacity_error(
    instance_type: str, zone: str | None = None, times: int | None = None
) -> None:
    """Fail RunInstances of ``instance_type`` in ``zone`` (any zone if None) ``times`` times."""
    with _lock:
        _capacity_rules.append(_CapacityRule(instance_type, zone, times))


def clear_capacity_errors() -> None:
    with _lock:
        _capacity_rules.clear()


def define_capacity_reservation(
    reservation_id: str,
    instance_type: str,
    zone: str,
    count: int,
    group_arn: str | None = None,
    *,
    capacity_block: tuple[datetime, datetime] | None = None,
) -> None:
    """Define (or redefine, e.g. with more slots) a targeted capacity reservation; with
    ``capacity_block`` (its start and end), a capacity block."""
    if count < 0:
        raise ValueError(f"a reservation holds zero or more instances, not {count}")
    start, end = capacity_block or (None, None)
    if start is not None and end is not None and not start < end:
        raise ValueError(f"a capacity block ends after it starts, not {start} to {end}")
    with _lock:
        _reservations[reservation_id] = _Reservation(
            reservation_id,
            instance_type,
            zone,
            count,
            group_arn,
            "capacity-block" if capacity_block else "default",
            start,
            end,
        )


def clear_capacity_reservations() -> None:
    with _lock:
        _reservations.clear()


def capacity_reservations() -> list[dict[str, Any]]:
    """Every reservation with the live instances in it, as the control endpoint lists them."""
    with _lock:
        return [
            {
                "id": r.reservation_id,
                "instanceType": r.instance_type,
                "zone": r.zone,
                "count": r.count,
                "groupArn": r.group_arn,
                "instanceIds": sorted(_instances_in(r.reservation_id)),
            }
            for r in _reservations.values()
        ]


def shutdown_from_inside(instance_id: str) -> str:
    """Power the instance off from inside; returns the state it lands in."""
    with _lock:
        backend: Any
        for _, _, backend in ec2_backends.iter_backends():
            instance = next((i for i in backend.all_instances() if i.id == instance_id), None)
            if instance is None:
                continue
            if instance.instance_initiated_shutdown_behavior == "terminate":
                backend.terminate_instances([instance_id])
            else:
                backend.stop_instances([instance_id])
            instance.state_reason = StateReason(
                "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
                "Client.InstanceInitiatedShutdown",
            )
            state: str = instance._state.name
            log.info("instance %s shut down from inside: %s", instance_id, state)
            return state
    raise KeyError(f"no instance {instance_id} in the local AWS")


def _find_instance(instance_id: str) -> tuple[Any, Instance]:
    backend: Any
    for _, _, backend in ec2_backends.iter_backends():
        instance = next((i for i in backend.all_instances() if i.id == instance_id), None)
        if instance is not None:
            return backend, instance
    raise KeyError(f"no instance {instance_id} in the local AWS")


def interrupt_spot_instance(instance_id: str, warning_seconds: float = 120.0) -> dict[str, str]:
    """EC2 decides to reclaim a spot instance ``warning_seconds`` from now; returns the
    notice its instance metadata serves (``spot/instance-action``)."""
    with _lock:
        _, instance = _find_instance(instance_id)
        if instance.lifecycle != "spot":
            raise ValueError(f"{instance_id} is not a spot instance; EC2 interrupts only those")
        if instance_id not in _spot_interruptions:
            when = datetime.now(UTC) + timedelta(seconds=warning_seconds)
            _spot_interruptions[instance_id] = {
                "action": "terminate",
                "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            log.info("spot instance %s is interrupted at %s", instance_id, when)
        return dict(_spot_interruptions[instance_id])


def spot_interruptions() -> dict[str, dict[str, str]]:
    """Every spot interruption notice, by instance id."""
    with _lock:
        return {key: dict(value) for key, value in _spot_interruptions.items()}


def reclaim_spot_instance(instance_id: str) -> str:
    """EC2 takes an interrupted spot instance back; returns the state it lands in."""
    with _lock:
        backend, instance = _find_instance(instance_id)
        if instance_id not in _spot_interruptions:
            raise ValueError(f"{instance_id} has no spot interruption notice")
        if instance._state.name in ("pending", "running"):
            backend.terminate_instances([instance_id])
            instance.state_reason = StateReason(
                "Server.SpotInstanceTermination: Spot instance termination",
                "Server.SpotInstanceTermination",
            )
            log.info("spot instance %s reclaimed", instance_id)
        state: str = instance._state.name
        return state


def _run_instances(self: InstanceResponse) -> ActionResult:
    assert _original_run_instances is not None
    backend = self.ec2_backend
    token = self._get_param("ClientToken")
    with _lock:
        tokens: dict[str, tuple[str, str]] = backend.__dict__.setdefault("_orca_client_tokens", {})
        fingerprint = _fingerprint(self)
        if token and token in tokens:
            seen_fingerprint, reservation_id = tokens[token]
            if seen_fingerprint != fingerprint:
                raise EC2ClientError(
                    "IdempotentParameterMismatch",
                    f"The client token '{token}' was already used with different parameters.",
                )
            return ActionResult(backend.reservations[reservation_id])

        _check_capacity(self)
        capacity_reservation = _reserved_slot(self)
        result = _original_run_instances(self)
        reservation = result.result
        _apply_template_shutdown_behaviour(self, reservation)
        market = (self._get_param("InstanceMarketOptions", {}) or {}).get("MarketType")
        if market == "capacity-block":
            # moto calls every instance with market options spot; EC2 names the block's.
            for instance in reservation.instances:  # type: ignore[attr-defined]
                instance.lifecycle = "capacity-block"
        if capacity_reservation is not None:
            for instance in reservation.instances:  # type: ignore[attr-defined]
                _place(instance, capacity_reservation)
        if token:
            tokens[token] = (fingerprint, reservation.id)  # type: ignore[attr-defined]
        return result


def _fingerprint(response: InstanceResponse) -> str:
    params = dict(getattr(response, "params", None) or response.querystring)
    for key in ("ClientToken", "Action", "Version", "DryRun"):
        params.pop(key, None)
    return json.dumps(params, sort_keys=True, default=str)


def _check_capacity(response: InstanceResponse) -> None:
    instance_type = response._get_param("InstanceType")
    zone = _launch_zone(response)
    for rule in _capacity_rules:
        if rule.instance_type != instance_type or rule.zone not in (None, zone):
            continue
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                _capacity_rules.remove(rule)
        raise EC2ClientError(
            "InsufficientInstanceCapacity",
            f"We currently do not have sufficient {instance_type} capacity in the "
            f"Availability Zone you requested ({zone}). Our system will be working on "
            "provisioning additional capacity.",
        )


def _launch_zone(response: InstanceResponse) -> str | None:
    zone: str | None = response._get_param("Placement.AvailabilityZone")
    # ORCA names the subnet on the network interface; other callers may name it at the top.
    interfaces = response._get_param("NetworkInterfaces", [])
    subnet_id = response._get_param("SubnetId") or next(
        (nic.get("SubnetId") for nic in interfaces if nic.get("SubnetId")), None
    )
    if subnet_id:
        zone = response.ec2_backend.get_subnet(subnet_id).availability_zone
    return zone


def _reserved_slot(response: InstanceResponse) -> _Reservation | None:
    """The reservation a targeted launch goes into, or the error EC2 would answer."""
    specification = response._get_param("CapacityReservationSpecification", {}) or {}
    target = specification.get("CapacityReservationTarget") or {}
    if specification.get("CapacityReservationPreference") != "capacity-reservations-only":
        return None
    reservation_id = target.get("CapacityReservationId")
    group_arn = target.get("CapacityReservationResourceGroupArn")
    if reservation_id and reservation_id not in _reservations:
        raise EC2ClientError(
            "InvalidCapacityReservationId.NotFound",
            f"The capacity reservation ID '{reservation_id}' does not exist",
        )
    candidates = [
        r
        for r in _reservations.values()
        if r.reservation_id == reservation_id or (group_arn and r.group_arn == group_arn)
    ]
    instance_type = response._get_param("InstanceType")
    count = int(response._get_param("MinCount", if_none="1"))
    zone = _launch_zone(response)
    _check_market(response, candidates)
    for candidate in candidates:
        free = candidate.count - len(_instances_in(candidate.reservation_id))
        if candidate.instance_type == instance_type and candidate.zone == zone and free >= count:
            return candidate
    raise EC2ClientError(
        "ReservationCapacityExceeded",
        "The requested reservation does not have sufficient compatible and available "
        "capacity for this request.",
    )


def _check_market(response: InstanceResponse, candidates: list[_Reservation]) -> None:
    """A capacity block takes launches of market type capacity-block while it runs (until
    EC2 starts ending its instances, 30 minutes before its end), and nothing else does."""
    market = (response._get_param("InstanceMarketOptions", {}) or {}).get("MarketType")
    blocks = [c for c in candidates if c.reservation_type == "capacity-block"]
    if market == "capacity-block" and not blocks:
        raise EC2ClientError(
            "InvalidParameterCombination",
            "The market type capacity-block can be used only with a Capacity Block reservation.",
        )
    if blocks and market != "capacity-block":
        raise EC2ClientError(
            "InvalidParameterCombination",
            "To launch into a Capacity Block, specify the market type capacity-block.",
        )
    now = datetime.now(UTC)
    for block in blocks:
        assert block.start is not None and block.end is not None
        if not block.start <= now < block.end - CAPACITY_BLOCK_ENDING:
            raise EC2ClientError(
                "ReservationCapacityExceeded",
                f"The Capacity Block {block.reservation_id} is not active "
                f"({block.start:%FT%TZ} to {block.end:%FT%TZ}).",
            )


def _describe_capacity_reservations(self: InstanceResponse) -> ActionResult:
    """DescribeCapacityReservations over the reservations of (e); moto has none."""
    wanted = set(self._get_param("CapacityReservationIds", []))
    now = datetime.now(UTC)
    with _lock:
        unknown = sorted(wanted - set(_reservations))
        if unknown:
            raise EC2ClientError(
                "InvalidCapacityReservationId.NotFound",
                f"The capacity reservation ID '{unknown[0]}' does not exist",
            )
        listed = []
        for r in _reservations.values():
            if wanted and r.reservation_id not in wanted:
                continue
            entry: dict[str, Any] = {
                "CapacityReservationId": r.reservation_id,
                "InstanceType": r.instance_type,
                "InstancePlatform": "Linux/UNIX",
                "AvailabilityZone": r.zone,
                "Tenancy": "default",
                "TotalInstanceCount": r.count,
                "AvailableInstanceCount": r.count - len(_instances_in(r.reservation_id)),
                "State": r.state(now),
                "ReservationType": r.reservation_type,
                "InstanceMatchCriteria": "targeted",
            }
            if r.start is not None and r.end is not None:
                entry.update(StartDate=r.start, EndDate=r.end, EndDateType="limited")
            listed.append(entry)
    return ActionResult({"CapacityReservations": listed})


def _place(instance: Any, reservation: _Reservation) -> None:
    # DescribeInstances serializes the instance's attributes by their snake_case names.
    instance.capacity_reservation_id = reservation.reservation_id
    instance.capacity_reservation_specification = {
        "CapacityReservationPreference": "capacity-reservations-only",
        "CapacityReservationTarget": {"CapacityReservationId": reservation.reservation_id},
    }


def _instances_in(reservation_id: str) -> list[str]:
    """The ids of the instances holding a slot of the reservation, in every backend."""
    held: list[str] = []
    backend: Any
    for _, _, backend in ec2_backends.iter_backends():
        for instance in backend.all_instances():
            placed = getattr(instance, "capacity_reservation_id", None)
            if placed == reservation_id and instance._state.name in _HOLDS_A_SLOT:
                held.append(instance.id)
    return held


def _apply_template_shutdown_behaviour(response: InstanceResponse, reservation: Any) -> None:
    if response._get_param("InstanceInitiatedShutdownBehavior"):
        return
    template_arg = response._get_param("LaunchTemplate", {})
    if not template_arg:
        return
    data = response.ec2_backend._get_template_from_args(template_arg).data
    behaviour = data.get("InstanceInitiatedShutdownBehavior")
    if behaviour:
        for instance in reservation.instances:
            instance.instance_initiated_shutdown_behavior = behaviour


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s", self.requestline, code)


def _control_app(app: DomainDispatcherApplication) -> Callable[..., Iterable[bytes]]:
    """moto's WSGI app, with ORCA's control endpoint in front of it."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if aws_pricing.handles(environ):
            return aws_pricing.price_list_app(environ, start_response)
        if not environ.get("PATH_INFO", "").startswith(CONTROL_PREFIX):
            return app(environ, start_response)  # type: ignore[no-any-return]
        request = Request(environ)
        return _control(request)(environ, start_response)

    return wsgi


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _control(request: Request) -> Response:
    path = request.path[len(CONTROL_PREFIX) :].strip("/").split("/")
    try:
        priced = aws_pricing.control(request, path)
        if priced is not None:
            return priced
        if path == ["capacity-errors"] and request.method == "POST":
            body = request.get_json(force=True)
            inject_capacity_error(body["instanceType"], body.get("zone"), body.get("times"))
            return Response(status=204)
        if path == ["capacity-errors"] and request.method == "DELETE":
            clear_capacity_errors()
            return Response(status=204)
        if path == ["capacity-reservations"] and request.method == "POST":
            body = request.get_json(force=True)
            block = body.get("capacityBlock")
            define_capacity_reservation(
                body["id"],
                body["instanceType"],
                body["zone"],
                int(body["count"]),
                body.get("groupArn"),
                capacity_block=(
                    (_parse_time(block["start"]), _parse_time(block["end"])) if block else None
                ),
            )
            return Response(status=204)
        if path == ["capacity-reservations"] and request.method == "GET":
            listed = json.dumps(capacity_reservations())
            return Response(listed, mimetype="application/json")
        if path == ["capacity-reservations"] and request.method == "DELETE":
            clear_capacity_reservations()
            return Response(status=204)
        if len(path) == 3 and path[0] == "instances" and path[2] == "shutdown":
            state = shutdown_from_inside(path[1])
            return Response(json.dumps({"state": state}), mimetype="application/json")
        if path[:1] == ["instances"] and path[2:] == ["spot-interruption"]:
            body = request.get_json(force=True, silent=True) or {}
            notice = interrupt_spot_instance(path[1], float(body.get("warningSeconds", 120)))
            return Response(json.dumps(notice), mimetype="application/json")
        if path[:1] == ["instances"] and path[2:] == ["spot-reclaim"]:
            state = reclaim_spot_instance(path[1])
            return Response(json.dumps({"state": state}), mimetype="application/json")
        if path == ["spot-interruptions"] and request.method == "GET":
            return Response(json.dumps(spot_interruptions()), mimetype="application/json")
    except KeyError as e:
        return Response(json.dumps({"error": e.args[0]}), status=404, mimetype="application/json")
    except (ValueError, TypeError) as e:
        return Response(json.dumps({"error": str(e)}), status=400, mimetype="application/json")
    return Response(json.dumps({"error": f"no such control call {request.path}"}), status=404)


class LocalAws(aws_pricing.InProcessPricing):
    """The local AWS served from a thread of this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local AWS is not started; call start() first")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> LocalAws:
        install()
        app = _control_app(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self.host, self.port, app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-aws", daemon=True
        )
        self._thread.start()
        log.info("local AWS serving at %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None

    inject_capacity_error = staticmethod(inject_capacity_error)
    clear_capacity_errors = staticmethod(clear_capacity_errors)
    shutdown_from_inside = staticmethod(shutdown_from_inside)
    define_capacity_reservation = staticmethod(define_capacity_reservation)
    clear_capacity_reservations = staticmethod(clear_capacity_reservations)
    capacity_reservations = staticmethod(capacity_reservations)
    interrupt_spot_instance = staticmethod(interrupt_spot_instance)
    spot_interruptions = staticmethod(spot_interruptions)
    reclaim_spot_instance = staticmethod(reclaim_spot_instance)

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalAwsControl(aws_pricing.PricingControl):
    """ORCA's extensions of a local AWS in another process, over its control endpoint."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + CONTROL_PREFIX + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def inject_capacity_error(
        self, instance_type: str, zone: str | None = None, times: int | None = None
    ) -> None:
        """RunInstances of ``instance_type`` fails with InsufficientInstanceCapacity in
        ``zone`` (None: every zone), ``times`` times (None: until cleared)."""
        body = {"instanceType": instance_type, "zone": zone, "times": times}
        self._call("POST", "capacity-errors", body)

    def clear_capacity_errors(self) -> None:
        self._call("DELETE", "capacity-errors")

    def shutdown_from_inside(self, instance_id: str) -> str:
        return str(self._call("POST", f"instances/{instance_id}/shutdown")["state"])

    def define_capacity_reservation(
        self,
        reservation_id: str,
        instance_type: str,
        zone: str,
        count: int,
        group_arn: str | None = None,
        *,
        capacity_block: tuple[datetime, datetime] | None = None,
    ) -> None:
        """A targeted reservation of ``count`` instances of a type in a zone (in the group
        ``group_arn`` if given); with ``capacity_block=(start, end)``, a capacity block."""
        body: dict[str, Any] = {
            "id": reservation_id,
            "instanceType": instance_type,
            "zone": zone,
            "count": count,
            "groupArn": group_arn,
        }
        if capacity_block is not None:
            start, end = capacity_block
            body["capacityBlock"] = {"start": start.isoformat(), "end": end.isoformat()}
        self._call("POST", "capacity-reservations", body)

    def clear_capacity_reservations(self) -> None:
        self._call("DELETE", "capacity-reservations")

    def capacity_reservations(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self._call("GET", "capacity-reservations")
        return listed

    def interrupt_spot_instance(
        self, instance_id: str, warning_seconds: float = 120.0
    ) -> dict[str, str]:
        body = {"warningSeconds": warning_seconds}
        notice: dict[str, str] = self._call(
            "POST", f"instances/{instance_id}/spot-interruption", body
        )
        return notice

    def spot_interruptions(self) -> dict[str, dict[str, str]]:
        listed: dict[str, dict[str, str]] = self._call("GET", "spot-interruptions")
        return listed

    def reclaim_spot_instance(self, instance_id: str) -> str:
        return str(self._call("POST", f"instances/{instance_id}/spot-reclaim")["state"])


class LocalAwsProcess:
    """The local AWS as a child process (``python -m orca_local.aws``), with its own state."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 30) -> None:
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the local AWS process is not started; call start() first")
        return self._url

    @property
    def control(self) -> LocalAwsControl:
        return LocalAwsControl(self.url)

    def start(self) -> LocalAwsProcess:
        with tempfile.TemporaryDirectory(prefix="orca-local-aws-") as tmp:
            ready = Path(tmp) / "ready"
            command = [sys.executable, "-m", "orca_local.aws", "--host", self.host]
            command += ["--port", str(self.port), "--ready-file", str(ready)]
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            deadline = time.monotonic() + self.start_timeout
            while not ready.exists():
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"the local AWS exited with {self._process.returncode} before it was ready"
                    )
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the local AWS was not ready in {self.start_timeout}s")
                time.sleep(0.05)
            self._url = ready.read_text().strip()
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> LocalAwsProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The local AWS: moto with ORCA's extensions.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, help="written with the URL once serving")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("ORCA_LOG_LEVEL", "INFO"))

    server = LocalAws(args.host, args.port).start()
    if args.ready_file:
        # Written whole then renamed, so a reader never sees half a URL.
        partial = args.ready_file.with_suffix(".partial")
        partial.write_text(server.url + "\n")
        partial.replace(args.ready_file)
    sys.stdout.write(server.url + "\n")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
