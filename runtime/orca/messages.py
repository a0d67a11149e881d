"""The status contract between the agent on an instance and the runtime.

The agent sends a :class:`StatusReport` to the department's SQS queue each time
something about its pod changes. SQS standard queues may deliver a message more
than once and out of order, so every report is a full snapshot of the pod, not
a delta, and carries a ``sequence`` that only grows for one instance: the
runtime applies a report only if its sequence is higher than the last one it
applied (kept on the pod as an annotation), which makes delivery idempotent.

Field names on the wire are camelCase, like the Kubernetes objects they feed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

SCHEMA_VERSION = 1

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
ContainerStateName = Literal["waiting", "running", "terminated"]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class ContainerReport(_Wire):
    """One container as the agent sees it, shaped after a Kubernetes ContainerStatus."""

    name: str
    image: str
    image_id: str = ""
    state: ContainerStateName
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    ready: bool = False
    restart_count: int = 0


class StatusReport(_Wire):
    """A full snapshot of one pod on one instance."""

    version: int = SCHEMA_VERSION
    pod_uid: str
    instance_id: str
    sequence: int = Field(ge=0)
    sent_at: datetime
    phase: PodPhase
    reason: str | None = None
    message: str | None = None
    private_ip: str | None = None
    init_containers: list[ContainerReport] = Field(default_factory=list)
    containers: list[ContainerReport] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)

    @classmethod
    def from_json(cls, body: str | bytes) -> StatusReport:
        return cls.model_validate_json(body)
