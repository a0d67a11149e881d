"""The pod bundle: what an instance needs to run its pod, resolved by the runtime.

User data must stay free of secrets, so the pod's spec, with every reference the
API server would resolve for a kubelet (env from ConfigMaps and Secrets, field
references) already resolved, travels as a bundle object in the envelope's
encrypted bucket, readable only by instances of the department's role. The
runtime writes it before the launch and deletes it when the pod ends.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

BUNDLE_SCHEMA_VERSION = 1


class PodBundle(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    version: int = BUNDLE_SCHEMA_VERSION
    pod_uid: str
    namespace: str
    name: str
    # The pod's spec exactly as the API server serves it (camelCase keys).
    spec: dict[str, Any]
    # Container name -> environment, in declaration order, with valueFrom resolved.
    # Init containers and containers share one namespace of names, as in Kubernetes.
    env: dict[str, dict[str, str]] = Field(default_factory=dict)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    @classmethod
    def from_json(cls, body: str | bytes) -> PodBundle:
        return cls.model_validate_json(body)
