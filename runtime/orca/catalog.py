"""The EC2 instance catalog: what each instance type a pod may name actually has.

A researcher names an exact EC2 type in the pod's ``orca.research/instance-type``
annotation; the runtime checks the name exists, that the department allows it,
and (with :mod:`orca.resources`) that the pod's requests fit it. Those checks
need the type's vCPUs, memory, GPUs or Neuron devices, architecture, purchase
options and an on-demand price for the budget estimate.

Two sources feed the catalog. EC2's DescribeInstanceTypes is authoritative for
hardware facts and knows every type in the region, but it has no prices. The
table shipped with the package (``data/instance_types.json``) holds the types
ORCA's users name most, with us-east-1 list prices, and is what the runtime
uses when EC2 cannot be reached. :meth:`Catalog.merged` combines them: live
hardware facts win, the shipped table fills prices and any type the live
answer lacks. :class:`CachedCatalog` holds the merged catalog for a TTL and
degrades to the shipped table (with a WARNING) when EC2 errors.

Names are exact, as EC2 spells them: ``p6-b200.48xlarge`` exists,
``p6.48xlarge`` does not; :meth:`Catalog.close_matches` feeds "did you mean".
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

AcceleratorKind = Literal["nvidia", "neuron"]
Architecture = Literal["x86_64", "arm64"]

# A boto3 EC2 client; boto3 ships no type information for it.
EC2Client = Any

SHIPPED_TABLE = "instance_types.json"
DEFAULT_TTL_SECONDS = 6 * 3600.0
# After a failed refresh, wait this long before asking EC2 again, so a broken
# endpoint does not turn every catalog lookup into an API call.
DEFAULT_RETRY_SECONDS = 300.0
# AWS accepts up to 200 values per filter; stay well below it.
_FILTER_VALUES_PER_CALL = 100


@dataclass(frozen=True)
class InstanceType:
    """The facts about one EC2 instance type that ORCA decides on."""

    name: str
    vcpus: int
    memory_mib: int
    architecture: Architecture
    gpus: int = 0
    gpu_model: str | None = None  # e.g. "H100", "L40S"
    gpu_memory_mib: int | None = None  # per GPU
    neuron_devices: int = 0  # Trainium / Inferentia devices
    neuron_model: str | None = None  # e.g. "Trainium2", "Inferentia2"
    accelerator_kind: AcceleratorKind | None = None
    # us-east-1 Linux on-demand list price; only the shipped table carries one.
    on_demand_usd_per_hour: Decimal | None = None
    supports_spot: bool = True
    supports_capacity_block: bool = False

    @property
    def family(self) -> str:
        """``p5`` for ``p5.48xlarge``, ``p6-b200`` for ``p6-b200.48xlarge``."""
        return self.name.split(".", 1)[0]

    @property
    def nvidia_gpus(self) -> int:
        """GPUs a pod can claim as ``nvidia.com/gpu`` (other vendors' GPUs count 0)."""
        return self.gpus if self.accelerator_kind == "nvidia" else 0

    def describe_accelerators(self) -> str:
        """A short human phrase, e.g. ``8x NVIDIA H100`` or ``no accelerators``."""
        if self.gpus:
            vendor = "NVIDIA " if self.accelerator_kind == "nvidia" else ""
            return f"{self.gpus}x {vendor}{self.gpu_model or 'GPU'}"
        if self.neuron_devices:
            return f"{self.neuron_devices}x {self.neuron_model or 'Neuron device'}"
        return "no accelerators"


def matches_pattern(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` is allowed by any of ``patterns``.

    A pattern is an exact name (``p5.48xlarge``), a family wildcard (``g6e.*``)
    or any shell-style pattern (``p5*`` also admits ``p5e`` and ``p5en``).
    Matching is case-sensitive because EC2 names are.
    """
    return any(fnmatch.fnmatchcase(name, pattern.strip()) for pattern in patterns)


class Catalog:
    """An immutable set of instance types, looked up by exact name."""

    def __init__(self, types: Iterable[InstanceType]) -> None:
        self._types: dict[str, InstanceType] = {t.name: t for t in types}

    def get(self, name: str) -> InstanceType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[InstanceType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def close_matches(self, name: str, n: int = 3) -> list[str]:
        """Known names that look like ``name``, best first, for "did you mean ...?".

        Besides spelling, two mistakes are common enough to rank first: the
        wrong case (``P5.48xlarge``) and a family without its variant suffix
        (``p6.48xlarge`` for ``p6-b200.48xlarge``), which spelling similarity
        alone ranks below unrelated types of the same size.
        """
        family, _, size = name.lower().partition(".")
        # Only for a family that has no types of its own: m7i.xlarg is m7i.xlarge misspelt,
        # not a variant of m7i (m7i-flex).
        bare = not any(t.family == family for t in self)
        variants = sorted(
            (t.name for t in self if bare and t.family.startswith(family + "-")),
            key=lambda other: (other.partition(".")[2] != size, other),
        )
        same_but_case = [other for other in self._types if other.lower() == name.lower()]
        spelled = difflib.get_close_matches(name, self._types, n=n, cutoff=0.6)

        ranked = dict.fromkeys([*same_but_case, *variants, *spelled])
        ranked.pop(name, None)
        return list(ranked)[:n]

    @staticmethod
    def matches_pattern(name: str, patterns: Iterable[str]) -> bool:
        """The module's :func:`matches_pattern`, reachable from the class."""
        return matches_pattern(name, patterns)

    def matching(self, patterns: Iterable[str]) -> list[InstanceType]:
        """The types an allow-list admits, sorted by name."""
        patterns = list(patterns)
        return [self._types[n] for n in self.names() if matches_pattern(n, patterns)]

    @classmethod
    def shipped(cls) -> Catalog:
        """The table shipped with the package (hardware facts and list prices)."""
        text = resources.files("orca").joinpath("data", SHIPPED_TABLE).read_text("utf-8")
        return cls.from_table(json.loads(text))

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Catalog:
        """Build a catalog from the shipped table's JSON shape."""
        types = []
        for row in table["instance_types"]:
            price = row.get("on_demand_usd_per_hour")
            types.append(
                InstanceType(
                    name=row["name"],
                    vcpus=int(row["vcpus"]),
                    memory_mib=int(row["memory_mib"]),
                    architecture=row["architecture"],
                    gpus=int(row.get("gpus", 0)),
                    gpu_model=row.get("gpu_model"),
                    gpu_memory_mib=row.get("gpu_memory_mib"),
                    neuron_devices=int(row.get("neuron_devices", 0)),
                    neuron_model=row.get("neuron_model"),
                    accelerator_kind=row.get("accelerator_kind"),
                    on_demand_usd_per_hour=Decimal(price) if price is not None else None,
                    supports_spot=bool(row.get("supports_spot", True)),
                    supports_capacity_block=bool(row.get("supports_capacity_block", False)),
                )
            )
        return cls(types)

    @classmethod
    def from_ec2(cls, ec2_client: EC2Client, names: Iterable[str] | None = None) -> Catalog:
        """Read DescribeInstanceTypes, all types in the region or only ``names``.

        ``names`` goes in as an ``instance-type`` filter rather than the
        ``InstanceTypes`` parameter: EC2 fails the whole call when that
        parameter holds one unknown name, whereas a filter just omits it.
        Botocore errors propagate; :class:`CachedCatalog` decides what to do.
        """
        requests: list[dict[str, Any]] = [{}]
        if names is not None:
            wanted = sorted(set(names))
            step = _FILTER_VALUES_PER_CALL
            requests = [
                {"Filters": [{"Name": "instance-type", "Values": wanted[i : i + step]}]}
                for i in range(0, len(wanted), step)
            ]

        paginator = ec2_client.get_paginator("describe_instance_types")
        types = []
        for request in requests:
            for page in paginator.paginate(**request):
                for info in page.get("InstanceTypes", []):
                    converted = instance_type_from_ec2(info)
                    if converted is not None:
                        types.append(converted)
        return cls(types)

    @classmethod
    def merged(cls, live: Catalog, shipped: Catalog) -> Catalog:
        """Live hardware facts, shipped prices, and shipped types the live answer lacks.

        Real EC2 always reports accelerators for accelerated types; a stand-in
        may not, so when the live entry has none and the shipped one has some,
        the shipped accelerator facts are kept.
        """
        types = {t.name: t for t in shipped}
        for live_type in live:
            known = types.get(live_type.name)
            if known is None:
                types[live_type.name] = live_type
                continue

            combined = dataclasses.replace(
                live_type, on_demand_usd_per_hour=known.on_demand_usd_per_hour
            )
            if not (live_type.gpus or live_type.neuron_devices) and (
                known.gpus or known.neuron_devices
            ):
                combined = dataclasses.replace(
                    combined,
                    gpus=known.gpus,
                    gpu_model=known.gpu_model,
                    gpu_memory_mib=known.gpu_memory_mib,
                    neuron_devices=known.neuron_devices,
                    neuron_model=known.neuron_model,
                    accelerator_kind=known.accelerator_kind,
                )
            types[live_type.name] = combined
        return cls(types.values())


def instance_type_from_ec2(info: Mapping[str, Any]) -> InstanceType | None:
    """Convert one DescribeInstanceTypes entry; None for types ORCA cannot run on.

    Mac instances (architectures ``x86_64_mac``/``arm64_mac``) run no Linux
    AMI, so they are left out.
    """
    name = info["InstanceType"]
    archs = info.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
    architecture: Architecture
    if "x86_64" in archs:
        architecture = "x86_64"
    elif "arm64" in archs:
        architecture = "arm64"
    else:
        logger.debug("leaving %s out of the catalog: architectures %s", name, archs)
        return None

    gpus = info.get("GpuInfo", {}).get("Gpus", [])
    gpu_count = sum(int(g.get("Count", 0)) for g in gpus)
    first_gpu = gpus[0] if gpus else {}
    gpu_memory = first_gpu.get("MemoryInfo", {}).get("SizeInMiB")

    # Inferentia 1 types report their chips only as inference accelerators;
    # Inferentia 2 and Trainium report NeuronInfo (inf2 reports both).
    neuron = info.get("NeuronInfo", {}).get("NeuronDevices", [])
    if not neuron:
        neuron = [
            a
            for a in info.get("InferenceAcceleratorInfo", {}).get("Accelerators", [])
            if a.get("Manufacturer") == "AWS"
        ]
    neuron_count = sum(int(d.get("Count", 0)) for d in neuron)

    kind: AcceleratorKind | None = None
    if gpu_count and str(first_gpu.get("Manufacturer", "")).upper() == "NVIDIA":
        kind = "nvidia"
    elif neuron_count:
        kind = "neuron"

    usage = info.get("SupportedUsageClasses", [])
    return InstanceType(
        name=name,
        vcpus=int(info["VCpuInfo"]["DefaultVCpus"]),
        memory_mib=int(info["MemoryInfo"]["SizeInMiB"]),
        architecture=architecture,
        gpus=gpu_count,
        gpu_model=first_gpu.get("Name"),
        gpu_memory_mib=int(gpu_memory) if gpu_memory is not None else None,
        neuron_devices=neuron_count,
        neuron_model=neuron[0].get("Name") if neuron else None,
        accelerator_kind=kind,
        supports_spot="spot" in usage,
        supports_capacity_block="capacity-block" in usage,
    )


class CachedCatalog:
    """The merged live catalog, refreshed at most once per TTL.

    ``clock`` returns monotonic seconds (``time.monotonic`` by default) and is
    injected so tests can move time. When DescribeInstanceTypes fails, the last
    good merged catalog is kept if there is one, else the shipped table is
    used; either way a WARNING says so, and EC2 is asked again after
    ``retry_seconds``. Safe to share between threads.
    """

    def __init__(
        self,
        ec2_client: EC2Client,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        shipped: Catalog | None = None,
        names: Iterable[str] | None = None,
    ) -> None:
        self._ec2 = ec2_client
        self._ttl = ttl_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._shipped = shipped if shipped is not None else Catalog.shipped()
        self._names = list(names) if names is not None else None
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._live = False
        self._next_refresh = 0.0

    @property
    def is_live(self) -> bool:
        """Whether the catalog in hand came from EC2 (False: the shipped table)."""
        return self._live

    def get(self) -> Catalog:
        """The current catalog, refreshing it from EC2 when it is due."""
        with self._lock:
            if self._catalog is None or self._clock() >= self._next_refresh:
                return self._refresh()
            return self._catalog

    def invalidate(self) -> None:
        """Make the next :meth:`get` ask EC2 again."""
        with self._lock:
            self._next_refresh = 0.0

    def _refresh(self) -> Catalog:
        try:
            live = Catalog.from_ec2(self._ec2, self._names)
        except (BotoCoreError, ClientError) as e:
            self._next_refresh = self._clock() + self._retry
            if self._catalog is not None and self._live:
                logger.warning(
                    "DescribeInstanceTypes failed (%s); keeping the instance catalog read "
                    "earlier and asking again in %.0f s",
                    e,
                    self._retry,
                )
                return self._catalog
            logger.warning(
                "DescribeInstanceTypes failed (%s); using the shipped instance table "
                "(%d types) and asking again in %.0f s",
                e,
                len(self._shipped),
                self._retry,
            )
            self._catalog = self._shipped
            self._live = False
            return self._catalog

        self._catalog = Catalog.merged(live, self._shipped)
        self._live = True
        self._next_refresh = self._clock() + self._ttl
        logger.debug("instance catalog refreshed from EC2: %d types", len(live))
        return self._catalog
