"""What a pod asks for, counted as the Kubernetes scheduler counts it, and whether a type holds it.

ORCA launches exactly the instance type a pod names, so before launching it
checks that the pod's requests fit that type; a pod that cannot fit is refused
with a message that names the shortfall instead of starting an instance that
could never run it.

The pod's effective request follows the scheduler (``PodRequests`` in
Kubernetes' resource helpers, 1.29+ with sidecar containers):

- a container's requests default to its limits where only limits are given,
  which is how extended resources such as ``nvidia.com/gpu`` are written;
- app containers run together, so their requests add up;
- init containers run one at a time before them, so only the largest counts,
  except sidecars (init containers with ``restartPolicy: Always``), which keep
  running: they add to the app containers and to every init container that
  starts after them;
- pod-level ``spec.resources`` (Kubernetes 1.32+) replaces the CPU and memory
  sums when set; ``spec.overhead`` (RuntimeClass) is added last.

Memory: the instance keeps some for the OS, the container runtime and the ORCA
agent, so a pod may use the type's memory minus :func:`memory_reserve_bytes`
(5% of it, at least 256 MiB and at most 2 GiB). CPU is not reserved: the agent
is idle next to the pod's containers, and a pod asking every vCPU of the type
(as the README's ``p5.48xlarge`` example does, 192 of 192) is a normal request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from orca.catalog import InstanceType

CPU = "cpu"
MEMORY = "memory"
NVIDIA_GPU = "nvidia.com/gpu"
# The Neuron device plugin advertises the same devices under both names.
NEURON_DEVICE_NAMES = ("aws.amazon.com/neuron", "aws.amazon.com/neurondevice")

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

MEMORY_RESERVE_FRACTION = Decimal("0.05")
MEMORY_RESERVE_MIN_BYTES = 256 * MIB
MEMORY_RESERVE_MAX_BYTES = 2 * GIB

# Resources that pod-level spec.resources may set (Kubernetes PodLevelResources).
_POD_LEVEL = (CPU, MEMORY)


class InvalidResourceQuantity(ValueError):
    """A resource quantity in the pod spec is not a valid, non-negative Kubernetes quantity."""


@dataclass(frozen=True)
class PodResources:
    """A pod's effective request, in the units ORCA compares against an instance type."""

    cpu_millicores: int = 0
    memory_bytes: int = 0
    gpus: int = 0  # nvidia.com/gpu
    neuron_devices: int = 0  # aws.amazon.com/neuron or aws.amazon.com/neurondevice
    # Every other resource by name (ephemeral-storage, hugepages-2Mi, vendor devices).
    other: dict[str, Decimal] = field(default_factory=dict)


def effective_requests(pod_spec: Mapping[str, Any]) -> PodResources:
    """What the scheduler counts for ``pod_spec`` (camelCase, as the API serves it)."""
    app: dict[str, Decimal] = {}
    for container in pod_spec.get("containers") or []:
        _add(app, _container_requests(container))

    # Sidecars started so far run next to each later init container and the app.
    sidecars: dict[str, Decimal] = {}
    init_peak: dict[str, Decimal] = {}
    for container in pod_spec.get("initContainers") or []:
        requests = _container_requests(container)
        if container.get("restartPolicy") == "Always":
            _add(app, requests)
            _add(sidecars, requests)
            running = dict(sidecars)
        else:
            running = dict(requests)
            _add(running, sidecars)
        _max(init_peak, running)

    total = dict(app)
    _max(total, init_peak)

    pod_level = _requests(pod_spec.get("resources") or {}, "spec.resources")
    for name in _POD_LEVEL:
        if name in pod_level:
            total[name] = pod_level[name]

    _add(total, _parse_all(pod_spec.get("overhead") or {}, "spec.overhead"))
    return _to_pod_resources(total)


def fits(resources: PodResources, instance_type: InstanceType) -> list[str]:
    """One human sentence per way the pod does not fit ``instance_type``; empty if it fits."""
    problems = []
    name = instance_type.name

    if resources.cpu_millicores > instance_type.vcpus * 1000:
        problems.append(
            f"the pod asks for {format_cpu(resources.cpu_millicores)} but {name} has "
            f"{format_cpu(instance_type.vcpus * 1000)}"
        )

    usable = usable_memory_bytes(instance_type)
    if resources.memory_bytes > usable:
        total = instance_type.memory_mib * MIB
        problems.append(
            f"the pod asks for {format_memory(resources.memory_bytes)} of memory but {name} "
            f"has {format_memory(total)}, of which {format_memory(usable)} is left for pods "
            f"after {format_memory(total - usable)} kept for the OS and the ORCA agent"
        )

    if resources.gpus > instance_type.nvidia_gpus:
        problems.append(
            f"the pod asks for {resources.gpus} {NVIDIA_GPU} but {name} has "
            f"{_accelerators_phrase(instance_type.nvidia_gpus, instance_type)}"
        )

    if resources.neuron_devices > instance_type.neuron_devices:
        problems.append(
            f"the pod asks for {resources.neuron_devices} {NEURON_DEVICE_NAMES[0]} but "
            f"{name} has {_accelerators_phrase(instance_type.neuron_devices, instance_type)}"
        )
    return problems


def memory_reserve_bytes(instance_type: InstanceType) -> int:
    """Memory kept back for the OS, container runtime and agent: 5%, within [256 MiB, 2 GiB]."""
    share = int(instance_type.memory_mib * MIB * MEMORY_RESERVE_FRACTION)
    return min(max(share, MEMORY_RESERVE_MIN_BYTES), MEMORY_RESERVE_MAX_BYTES)


def usable_memory_bytes(instance_type: InstanceType) -> int:
    """Memory a pod may request on ``instance_type``."""
    return instance_type.memory_mib * MIB - memory_reserve_bytes(instance_type)


def format_memory(num_bytes: int) -> str:
    """Bytes in Kubernetes binary units: ``16Gi``, ``1.5Gi``, ``512Mi``, ``2Ti``, ``100``.

    Ti is used only for whole tebibytes: rounded to it, 2046Gi would read "2Ti".
    """
    if num_bytes >= TIB and num_bytes % TIB == 0:
        return f"{num_bytes // TIB}Ti"
    for unit, size in (("Gi", GIB), ("Mi", MIB), ("Ki", KIB)):
        if num_bytes >= size:
            value = (Decimal(num_bytes) / size).quantize(Decimal("0.01"))
            return f"{_plain(value)}{unit}"
    return str(num_bytes)


def format_cpu(millicores: int) -> str:
    """Millicores as people say it: ``8 vCPU``, ``0.5 vCPU``."""
    return f"{_plain(Decimal(millicores) / 1000)} vCPU"


def _plain(value: Decimal) -> str:
    # "16.00" -> "16", "1.50" -> "1.5", and never exponent notation ("1E+2").
    return format(value.normalize(), "f")


def _accelerators_phrase(count: int, instance_type: InstanceType) -> str:
    if count == 0:
        return f"none ({instance_type.describe_accelerators()})"
    model = (
        instance_type.gpu_model if instance_type.gpus else instance_type.neuron_model
    ) or "unknown model"
    vendor = "NVIDIA " if instance_type.accelerator_kind == "nvidia" else ""
    return f"{count} ({vendor}{model})"


def _container_requests(container: Mapping[str, Any]) -> dict[str, Decimal]:
    where = f"container {container.get('name', '?')!r} resources"
    return _requests(container.get("resources") or {}, where)


def _requests(resources: Mapping[str, Any], where: str) -> dict[str, Decimal]:
    # Kubernetes defaulting: a resource with a limit and no request requests its limit.
    limits = _parse_all(resources.get("limits") or {}, f"{where}.limits")
    requests = _parse_all(resources.get("requests") or {}, f"{where}.requests")
    return {**limits, **requests}


def _parse_all(quantities: Mapping[str, Any], where: str) -> dict[str, Decimal]:
    parsed = {}
    for name, raw in quantities.items():
        try:
            # Floats go through str so 0.1 means 0.1, not its binary neighbour.
            value = parse_quantity(str(raw) if isinstance(raw, float) else raw)
        except ValueError as e:
            raise InvalidResourceQuantity(
                f"{where}.{name} is {raw!r}, which is not a Kubernetes quantity; "
                "write e.g. '500m', '2', '16Gi'"
            ) from e
        if not value.is_finite() or value < 0:
            raise InvalidResourceQuantity(
                f"{where}.{name} is {raw!r}; quantities must be finite and not negative"
            )
        parsed[name] = value
    return parsed


def _add(into: dict[str, Decimal], other: Mapping[str, Decimal]) -> None:
    for name, value in other.items():
        into[name] = into.get(name, Decimal(0)) + value


def _max(into: dict[str, Decimal], other: Mapping[str, Decimal]) -> None:
    for name, value in other.items():
        into[name] = max(into.get(name, Decimal(0)), value)


def _to_pod_resources(total: Mapping[str, Decimal]) -> PodResources:
    # Kubernetes rounds CPU up to whole millicores and memory up to whole bytes.
    other = {
        name: value
        for name, value in total.items()
        if name not in (CPU, MEMORY, NVIDIA_GPU, *NEURON_DEVICE_NAMES)
    }
    return PodResources(
        cpu_millicores=math.ceil(total.get(CPU, Decimal(0)) * 1000),
        memory_bytes=math.ceil(total.get(MEMORY, Decimal(0))),
        gpus=math.ceil(total.get(NVIDIA_GPU, Decimal(0))),
        neuron_devices=math.ceil(max(total.get(name, Decimal(0)) for name in NEURON_DEVICE_NAMES)),
        other=other,
    )
