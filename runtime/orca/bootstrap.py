"""User data for a burst instance: a short bootstrap that starts the ORCA agent.

User data is readable through the EC2 API and from inside the instance, so it
holds no secrets: only where to find the pod's bundle (which the instance role
alone can read), where to report, and the instance's hard deadline. EC2 caps
user data at 16 KB before base64; ours stays near 1 KB.

The agent's settings travel as one JSON document between fixed markers, so the
same text is both a runnable shell script and parseable by :func:`parse_user_data`
(which the local instance emulator uses to start the agent as the script would).
"""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

USER_DATA_LIMIT_BYTES = 16 * 1024
_BEGIN = "<<'ORCA_AGENT_CONFIG'"
_END = "ORCA_AGENT_CONFIG"


class AgentConfig(BaseModel):
    """What the agent needs to find its pod and report on it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    region: str
    cluster: str
    department: str
    pod_uid: str
    pod: str  # namespace/name, for log stream names and messages
    bundle_url: str  # s3://bucket/key
    status_queue_url: str
    log_group: str
    deadline: datetime  # the instance stops itself at this time, whatever happens
    # An s3:// tarball of wheels (the agent and what it needs), for AMIs without `orca`.
    agent_package_url: str | None = None
    # Only a spot instance can be interrupted, so only it polls metadata for notices.
    spot: bool = False
    # The dead-man switch: the runtime's heartbeat object (s3://...) and how long the agent
    # bears its silence before it stops the pod and powers off. Both or neither.
    heartbeat_url: str | None = None
    runtime_lease_seconds: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _lease_has_its_heartbeat(self) -> AgentConfig:
        if (self.heartbeat_url is None) != (self.runtime_lease_seconds is None):
            raise ValueError("heartbeat_url and runtime_lease_seconds go together")
        return self

    @property
    def runtime_lease(self) -> timedelta | None:
        if self.runtime_lease_seconds is None:
            return None
        return timedelta(seconds=self.runtime_lease_seconds)


_SCRIPT = """#!/bin/bash
# ORCA bootstrap: starts the agent that runs this instance's one pod.
# No secrets here; the pod's spec is fetched from the bundle named below.
set -euo pipefail
install -d -m 0700 /etc/orca
cat > /etc/orca/agent.json {begin}
{config}
{end}
agent_package={package}
if ! command -v orca >/dev/null 2>&1; then
  if [ -z "$agent_package" ]; then
    # Nothing can run the pod: power off (into terminate) rather than bill idle.
    echo "orca-bootstrap: no orca command on this AMI and no agent package configured" >&2
    shutdown -h now
    exit 1
  fi
  python3 -m venv /opt/orca
  aws s3 cp --quiet "$agent_package" /opt/orca/agent.tar
  tar -xf /opt/orca/agent.tar -C /opt/orca
  /opt/orca/bin/pip install --quiet --no-index --find-links /opt/orca/wheels orca-burst
  ln -sf /opt/orca/bin/orca /usr/local/bin/orca
fi
exec orca agent --config /etc/orca/agent.json
"""


def render_user_data(config: AgentConfig) -> str:
    """The bootstrap script for one instance."""
    body = config.model_dump_json(by_alias=True, exclude_none=True)
    package = shlex.quote(config.agent_package_url or "")
    script = _SCRIPT.format(begin=_BEGIN, config=body, end=_END, package=package)
    size = len(script.encode())
    if size > USER_DATA_LIMIT_BYTES:
        raise ValueError(f"user data is {size} bytes; EC2 allows {USER_DATA_LIMIT_BYTES}")
    return script


def parse_user_data(script: str) -> AgentConfig:
    """The agent settings inside a bootstrap script made by :func:`render_user_data`."""
    lines = script.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.endswith(_BEGIN)) + 1
        end = lines.index(_END, start)
    except (StopIteration, ValueError) as e:
        raise ValueError("not an ORCA bootstrap script: no agent settings block") from e
    return AgentConfig.model_validate_json("\n".join(lines[start:end]))
