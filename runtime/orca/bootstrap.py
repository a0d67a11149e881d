"""User data for a burst instance: a short bootstrap that runs the ORCA agent, then powers off.

User data is readable through the EC2 API and from inside the instance, so it
holds no secrets: only where to find the pod's bundle (which this instance
alone can read, see :mod:`orca.aws.bundles`), where to report, and the
instance's hard deadline. EC2 caps user data at 16 KB before base64; ours stays
under 6 KB.

The launch templates use the ECS-optimized Amazon Linux 2023 AMIs, which ship
Docker (with the NVIDIA container toolkit on the GPU variant) and Python 3.9, while
the agent needs 3.11. Their ``docker.service`` waits for cloud-init, and cloud-init
waits for the user data, so the user data only writes the agent's settings, a runner
script and an ``orca-agent`` systemd unit ordered after Docker, starts that unit
without waiting (``--no-block``) and ends; without systemd it runs the runner itself.

The agent normally runs from the ORCA image (``agent_image``, the runtime's own
image): the runner signs in to ECR when the image is in ECR, pulls it, and runs
``orca agent`` in a container that shares the
host's network (IMDSv2 with a hop limit of 1 still answers it), talks to the
host's dockerd through its socket, reads ``/etc/orca`` and writes pod volume
files under ``/run/orca`` at the same path as on the host, because the host's
dockerd resolves the bind mounts the agent asks for. An AMI that has ``orca``
itself runs it directly. Whichever way the agent ends, or when nothing can run
it, the runner powers the instance off into terminate (so does the user data if it
fails before the unit takes over): a container cannot power its host off, so the
runner tells the agent, with :data:`POWEROFF_BY_BOOTSTRAP_VAR`, that it does so after.

The pod's containers share the host's network too, where the hop limit does not
keep them from IMDS and so from the instance role's credentials (which write every
log stream and report of the department and pull its account's images). Before the agent starts,
the runner installs a metadata guard (:func:`render_metadata_guard`): the agent
puts every pod container in the cgroup :data:`POD_SLICE`, and an iptables rule
matching that cgroup (cgroup v2, as on AL2023) rejects its packets to IMDS. A
process cannot leave its cgroup from inside a container, unless privileged
(a department that allows privilege gives this guard up, as it gives up the rest
of the host). If the guard cannot be installed, no pod runs and the instance
powers off.

``ORCA_BOOTSTRAP_ROOT`` is unset on an instance; tests set it to run the script
under a scratch directory with stand-in commands.

The agent's settings travel as one JSON document between fixed markers, so the
same text is both a runnable shell script and parseable by :func:`parse_user_data`
(which the local instance emulator uses to start the agent as the script would).
"""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from orca.registry_auth import IMAGE_REFERENCE, ecr_registry, image_registry

USER_DATA_LIMIT_BYTES = 16 * 1024
# How long past its deadline an instance may live, which the budget holds: the agent stops
# the pod at the deadline, the runtime ends the instance by then, and the power-off the
# bootstrap schedules at boot ends it by then too, whatever hangs.
DEADLINE_GRACE = timedelta(minutes=2)
# Set in the agent's container: the bootstrap powers the instance off once the agent exits.
POWEROFF_BY_BOOTSTRAP_VAR = "ORCA_AGENT_POWEROFF_BY_BOOTSTRAP"
AGENT_CONTAINER = "orca-agent"
AGENT_UNIT = "orca-agent.service"
# The cgroup the pod's containers run in (Docker's --cgroup-parent), which the metadata
# guard names. No dash in the name: systemd reads a dash in a slice name as nesting
# (orca-pods.slice would live in orca.slice), and the cgroupfs driver does not; without one
# the path is /orcapods.slice under either driver.
POD_SLICE = "orcapods.slice"
# IMDS's IPv4 address; its IPv6 endpoint stays disabled in the launch templates.
METADATA_ADDRESS = "169.254.169.254"
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
    # The bucket of the pod's bundle, which the agent finds under its own instance ARN.
    bundle_bucket: str = Field(min_length=3, max_length=63)
    status_queue_url: str
    log_group: str
    deadline: datetime  # the instance stops itself at this time, whatever happens
    # The image that runs the agent on AMIs without `orca` (see the module docstring).
    agent_image: str | None = Field(default=None, max_length=512, pattern=IMAGE_REFERENCE)
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
# ORCA bootstrap: hands this instance's one pod to the ORCA agent, which powers off after it.
# No secrets here; the pod's spec is fetched from the bundle named below.
set -euo pipefail
root=${{ORCA_BOOTSTRAP_ROOT:-}}
# Until the agent's unit has taken over, any failure powers off into terminate.
trap 'echo "orca-bootstrap: powering off" >&2; shutdown -h now' EXIT
install -d -m 0700 "$root/etc/orca" "$root/run/orca"
# A power-off that needs no agent, at the deadline and its grace ({stop_at_text}):
# systemd's shutdown schedules it and returns; a later power-off replaces it.
if [ -d "$root/run/systemd/system" ]; then
  minutes=$(( ({stop_at} - $(date +%s)) / 60 ))
  shutdown -h "+$(( minutes > 0 ? minutes : 0 ))" "ORCA: past the pod's deadline"
else
  echo "orca-bootstrap: no systemd to schedule a power-off; the agent keeps the deadline" >&2
fi
cat > "$root/etc/orca/agent.json" {begin}
{config}
{end}
cat > "$root/etc/orca/guard-metadata.sh" <<'ORCA_GUARD'
{guard}ORCA_GUARD
cat > "$root/etc/orca/run-agent.sh" <<'ORCA_RUN_AGENT'
#!/bin/bash
set -uo pipefail
root=${{ORCA_BOOTSTRAP_ROOT:-}}
# However the agent ends (done, failed, killed, no image), power off into terminate: an
# instance must not bill on after its agent.
trap 'echo "orca-agent: powering off" >&2; shutdown -h now' EXIT
agent_image={image}
status=0
# No pod runs where its containers could take the instance role's credentials.
if ! /bin/bash "$root/etc/orca/guard-metadata.sh"; then
  echo "orca-agent: the metadata guard could not be installed; not running the pod" >&2
  exit 1
fi
if command -v orca >/dev/null 2>&1; then
  orca agent --config "$root/etc/orca/agent.json" || status=$?
elif [ -z "$agent_image" ]; then
  echo "orca-agent: no orca command on this AMI and no agent image configured" >&2
  exit 1
else
  # Registry credentials stay on tmpfs, off the instance's disk.
  export DOCKER_CONFIG="$root/run/orca-bootstrap"
  install -d -m 0700 "$DOCKER_CONFIG"
{login}  for attempt in 1 2 3 4 5; do
    docker pull --quiet "$agent_image" && break
    echo "orca-agent: pulling $agent_image failed ($attempt/5)" >&2
    [ "$attempt" -lt 5 ] || exit 1
    sleep 10
  done
  docker run --rm --name {container} --network host --user 0:0 \\
    --env {poweroff_var}=1 \\
    --volume /var/run/docker.sock:/var/run/docker.sock \\
    --volume "$root/etc/orca:/etc/orca:ro" \\
    --volume "$root/run/orca:/run/orca" \\
    "$agent_image" agent --config /etc/orca/agent.json || status=$?
fi
echo "orca-agent: the agent exited with status $status" >&2
exit "$status"
ORCA_RUN_AGENT
if ! command -v systemctl >/dev/null 2>&1; then
  trap - EXIT
  exec /bin/bash "$root/etc/orca/run-agent.sh"
fi
# On the ECS-optimized AMIs docker.service starts only after cloud-init, which waits for
# this script: the agent runs as a unit of its own, started without waiting for it.
cat > "$root/etc/systemd/system/{slice}" <<ORCA_SLICE
[Unit]
Description=ORCA: the pod's containers (refused the instance metadata service)
ORCA_SLICE
cat > "$root/etc/systemd/system/{unit}" <<ORCA_UNIT
[Unit]
Description=ORCA agent: runs this instance's one pod, then powers it off
Wants=docker.service network-online.target
After=docker.service network-online.target

[Service]
Type=exec
ExecStart=/bin/bash $root/etc/orca/run-agent.sh
# At shutdown (a spot reclaim, say) the agent stops the pod gracefully and reports it.
TimeoutStopSec=90
ORCA_UNIT
# The ECS-optimized AMIs start the ECS agent after cloud-init; it would try to join ECS's
# default cluster, which ORCA does not use, and retry for the instance's whole life.
systemctl mask --now ecs.service >/dev/null 2>&1 || true
systemctl daemon-reload
systemctl start --no-block {unit}
trap - EXIT
"""

_GUARD = """#!/bin/bash
# ORCA metadata guard: pod containers share the host's network, out of reach of IMDS's hop
# limit, so IMDS is refused to their cgroup; the agent and the host's services keep it.
set -euo pipefail
root=${{ORCA_BOOTSTRAP_ROOT:-}}
cgroup2=$(awk '$3 == "cgroup2" {{print $2; exit}}' /proc/mounts)
if [ -z "$cgroup2" ]; then
  echo "orca-guard: no cgroup2 hierarchy, so no rule can keep pods from IMDS" >&2
  exit 1
fi
# The rule names the cgroup, so it must exist first.
if [ -d "$root/run/systemd/system" ]; then
  systemctl start {slice}
else
  mkdir -p "$cgroup2/{slice}"
fi
rule=(OUTPUT -d {address} -m cgroup --path {slice} -m comment --comment orca-imds-guard -j REJECT)
iptables -w -C "${{rule[@]}}" 2>/dev/null || iptables -w -I "${{rule[@]}}"
# Proof, not faith: from a cgroup inside the slice, IMDS must refuse a connection at once.
probe="$root$cgroup2/{slice}/orca-guard-probe"
mkdir -p "$probe"
answered=0
timeout 5 bash -c 'echo $$ > "$1/cgroup.procs" && exec 3<>/dev/tcp/{address}/80' _ "$probe" \
  2>/dev/null && answered=1
rmdir "$probe" 2>/dev/null || true
if [ "$answered" = 1 ]; then
  echo "orca-guard: {address} still answers from {slice}; the rule does not hold" >&2
  exit 1
fi
echo "orca-guard: containers in {slice} are refused {address}" >&2
"""

_ECR_LOGIN = """\
  # ECR wants a sign-in; the instance role may pull the account's images.
  if command -v aws >/dev/null 2>&1; then
    aws ecr get-login-password --region {region} \\
      | docker login --username AWS --password-stdin {registry} >/dev/null \\
      || echo "orca-bootstrap: signing in to {registry} failed; pulling anyway" >&2
  else
    echo "orca-bootstrap: no aws command to sign in to {registry}; pulling anyway" >&2
  fi
"""


def render_user_data(config: AgentConfig) -> str:
    """The bootstrap script for one instance."""
    body = config.model_dump_json(by_alias=True, exclude_none=True)
    image = config.agent_image or ""
    login = ""
    ecr = ecr_registry(image) if image else None
    if ecr is not None:
        registry = image_registry(image)[0]
        login = _ECR_LOGIN.format(region=shlex.quote(ecr[1]), registry=shlex.quote(registry))
    script = _SCRIPT.format(
        begin=_BEGIN,
        config=body,
        end=_END,
        image=shlex.quote(image),
        login=login,
        container=AGENT_CONTAINER,
        poweroff_var=POWEROFF_BY_BOOTSTRAP_VAR,
        unit=AGENT_UNIT,
        slice=POD_SLICE,
        guard=render_metadata_guard(),
        stop_at=int((config.deadline + DEADLINE_GRACE).timestamp()),
        stop_at_text=(config.deadline + DEADLINE_GRACE).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    size = len(script.encode())
    if size > USER_DATA_LIMIT_BYTES:
        raise ValueError(f"user data is {size} bytes; EC2 allows {USER_DATA_LIMIT_BYTES}")
    return script


def render_metadata_guard(address: str = METADATA_ADDRESS, pod_slice: str = POD_SLICE) -> str:
    """The script that refuses ``address`` to the containers in ``pod_slice``.

    The bootstrap's runner runs it before the agent, and runs no pod when it fails.
    """
    return _GUARD.format(address=shlex.quote(address), slice=shlex.quote(pod_slice))


def parse_user_data(script: str) -> AgentConfig:
    """The agent settings inside a bootstrap script made by :func:`render_user_data`."""
    lines = script.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.endswith(_BEGIN)) + 1
        end = lines.index(_END, start)
    except (StopIteration, ValueError) as e:
        raise ValueError("not an ORCA bootstrap script: no agent settings block") from e
    return AgentConfig.model_validate_json("\n".join(lines[start:end]))
