"""``make bench``: how fast pods burst end to end on the local stand-ins.

Starts the local AWS, the Kubernetes API emulator and Docker (as the demo
does), a department's runtime in this process and the instance emulator, then
creates ``--pods`` short CPU pods at once, bound to the ORCA node, and measures
for each pod the time from creation to its instance id on the pod, to
``Running`` and to ``Succeeded``, plus how many EC2 calls the runtime made.
The figures measure ORCA's own overhead and its self-imposed EC2 pacing
(RunInstances at half the account's refill rate), not EC2's boot times.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from orca import tags
from orca.aws.clients import AwsClients
from orca.kube.client import api_client
from orca.runtime import build_runtime
from orca.settings import Settings
from orca_local import services
from orca_local.envelope import create_envelope
from orca_local.instances import InstanceEmulator

REGION = "us-east-1"
DEPARTMENT = "bench"


def _pod(number: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"bench-{number:03d}",
            "annotations": {"orca.research/instance-type": "m7i.large"},
        },
        "spec": {
            "nodeName": f"orca-{DEPARTMENT}",
            "restartPolicy": "Never",
            "containers": [
                {"name": "step", "image": "busybox:1.36", "command": ["sh", "-c", "echo done"]}
            ],
        },
    }


def _percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s"


def run(pods: int, state: Path) -> dict[str, Any]:
    env = services.up(state / "services")
    # boto3 in this process and the agents it starts reach the local AWS through these.
    os.environ.update({k: v for k, v in env.items() if k != "KUBECONFIG"})
    try:
        aws = AwsClients(REGION, endpoint_url=env["AWS_ENDPOINT_URL"])
        envelope = create_envelope(aws, department=DEPARTMENT, cluster="bench", region=REGION)
        settings = Settings(
            department=DEPARTMENT,
            cluster_name="bench",
            region=REGION,
            subnet_ids=envelope.subnet_ids,
            security_group_ids=[envelope.security_group_id],
            launch_templates=envelope.launch_templates,
            status_queue_url=envelope.status_queue_url,
            bundle_bucket=envelope.bundle_bucket,
            log_group=envelope.log_group,
            kubeconfig=Path(env["KUBECONFIG"]),
            instance_resync_seconds=1,
            report_poll_seconds=1,
        )
        calls: dict[str, int] = {}
        aws.ec2.meta.events.register(
            "before-call.ec2.*",
            lambda model, **_: calls.__setitem__(model.name, calls.get(model.name, 0) + 1),
        )
        core = client.CoreV1Api(api_client(settings.kubeconfig))
        runtime = build_runtime(settings, aws=aws)
        # The emulator gets clients of its own, so the counts are the runtime's alone.
        hypervisor = AwsClients(REGION, endpoint_url=env["AWS_ENDPOINT_URL"])
        emulator = InstanceEmulator(
            hypervisor.ec2,
            hypervisor.s3,
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region=REGION,
            docker_host=env["DOCKER_HOST"],
            state_dir=state / "instances",
            tag_filter={tags.DEPARTMENT: DEPARTMENT},
        )
        with emulator:
            runtime.start()
            runtime.warm_catalog()
            created: dict[str, float] = {}
            for number in range(pods):
                name = f"bench-{number:03d}"
                core.create_namespaced_pod("default", _pod(number))
                created[name] = time.monotonic()
            launched: dict[str, float] = {}
            running: dict[str, float] = {}
            done: dict[str, float] = {}
            deadline = time.monotonic() + 120 + 3 * pods
            while len(done) < pods and time.monotonic() < deadline:
                listed = core.list_namespaced_pod("default")
                now = time.monotonic()
                for item in listed.items:
                    name = item.metadata.name
                    if (item.metadata.annotations or {}).get(tags.INSTANCE_ID_ANNOTATION):
                        launched.setdefault(name, now - created[name])
                    if item.status.phase in ("Running", "Succeeded"):
                        running.setdefault(name, now - created[name])
                    if item.status.phase in ("Succeeded", "Failed"):
                        done.setdefault(name, now - created[name])
                time.sleep(0.1)
            runtime.stop()
        return {
            "pods": pods,
            "finished": len(done),
            "to instance id": _percentiles(list(launched.values())),
            "to Running": _percentiles(list(running.values())),
            "to Succeeded": _percentiles(list(done.values())),
            "all finished after": f"{max(done.values(), default=0):.2f} s",
            "EC2 calls by the runtime": dict(sorted(calls.items())),
        }
    finally:
        services.down(state / "services")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orca_local.bench", description=__doc__)
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--state-dir", type=Path, default=Path(".local/bench"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = run(args.pods, args.state_dir.resolve())
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0 if result["finished"] == result["pods"] else 1


if __name__ == "__main__":
    sys.exit(main())
