"""The runtime's heartbeat: how an agent tells that the runtime is still there.

DESIGN promises that the agent shuts its instance down when the runtime has been
silent too long, so an instance whose runtime is gone (a deleted Deployment, a
cluster that lost its network, a stack torn down halfway) does not bill until the
pod's deadline, which may be days away. The signal is one small object per
department in the department's bundle bucket, ``heartbeats/<cluster>/<department>.json``,
holding the runtime's UTC time; the runtime rewrites it every lease / 6 and the
agents read it about once a minute.

The arithmetic lives here so both sides share it: the runtime writes six times per
lease, so five writes in a row can fail before any agent gives up; an agent reads
at least six times per lease, so it notices silence at most a sixth of a lease
late. Before an agent has read any heartbeat it counts from its own start, so a
runtime that never writes one still gets a whole lease.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

HEARTBEAT_PREFIX = "heartbeats/"
# Writes per lease: five may fail in a row before the agents stop their pods.
BEATS_PER_LEASE = 6
# Agents read at most this often: the object is cheap, but thousands of instances
# reading every second would not be.
MAX_READ_INTERVAL = timedelta(minutes=1)


def heartbeat_key(cluster: str, department: str) -> str:
    """The heartbeat's key in the department's bundle bucket (also granted in IAM)."""
    return f"{HEARTBEAT_PREFIX}{cluster}/{department}.json"


class Heartbeat(BaseModel):
    """The heartbeat object's body."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    time: AwareDatetime
    cluster: str
    department: str
    # The lease the runtime promises to keep, for a person reading the object.
    lease_seconds: int

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    @classmethod
    def from_json(cls, data: str | bytes) -> Heartbeat:
        return cls.model_validate_json(data)


def write_interval(lease: timedelta) -> timedelta:
    """How often the runtime writes its heartbeat."""
    return lease / BEATS_PER_LEASE


def read_interval(lease: timedelta) -> timedelta:
    """How often an agent reads the heartbeat."""
    return min(MAX_READ_INTERVAL, lease / BEATS_PER_LEASE)


def silence(now: datetime, last_heard: datetime | None, started: datetime) -> timedelta:
    """How long the runtime has been silent: since its last heartbeat, or since the agent
    started when none has been read yet (the runtime launched the instance, so it was
    there then). A heartbeat from a clock ahead of ours counts as no silence."""
    since = last_heard if last_heard is not None else started
    return max(timedelta(0), now - since)


def is_silent(
    now: datetime, last_heard: datetime | None, started: datetime, lease: timedelta
) -> bool:
    """True once the runtime has been silent longer than the lease."""
    return silence(now, last_heard, started) > lease


def utcnow() -> datetime:
    return datetime.now(UTC)
