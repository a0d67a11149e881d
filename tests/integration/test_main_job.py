"""The main job end to end: pods on the ORCA node run on emulated EC2 instances, for real.

The runtime, the agent and the containers are real; AWS is the local moto
server, the cluster is the API emulator, and each instance is the emulator
running the agent, whose containers run under Docker.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from orca import tags
from orca.aws.logs import ContainerLogs, stream_name
from orca_local.instances import InstanceEmulator
from tests.integration.runtime_fixtures import Burst, as_pod, case, eventually

CPU_BATCH_CHECKSUM = "3c1ba78ba93fdf61cb80b6dcb321c92ef633f263dc5e01bea4472e43045472bc  -"


def finished(burst: Burst, namespace: str, name: str) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        pod = burst.pod(namespace, name)
        phase = (pod or {}).get("status", {}).get("phase")
        return pod if phase in ("Succeeded", "Failed") else None

    finished = eventually(terminal, timeout=90, what=f"{namespace}/{name} to finish")
    return finished  # type: ignore[no-any-return]


def instance_of(burst: Burst, pod: dict[str, Any]) -> Any:
    [instance] = burst.instances(pod["metadata"]["uid"])
    return instance


def terminated(burst: Burst, pod: dict[str, Any]) -> bool:
    return instance_of(burst, pod).state in ("shutting-down", "terminated")


def log_lines(burst: Burst, pod: dict[str, Any], container: str) -> list[str]:
    meta = pod["metadata"]
    logs = ContainerLogs(burst.aws.logs, burst.settings.log_group)
    stream = stream_name(meta["namespace"], meta["name"], meta["uid"], container)
    return [line.message for line in logs.read(stream)]


def reasons(burst: Burst, namespace: str, name: str) -> list[str]:
    return [event["reason"] for event in burst.events(namespace, name)]


def test_cpu_batch_pod_succeeds_with_its_log_and_its_instance_terminated(
    burst: Burst, burst_emulator: InstanceEmulator
) -> None:
    burst.start()
    [manifest] = case("02-cpu-batch.yaml")
    created = burst.create(manifest)

    pod = finished(burst, "biology", "genome-align-chunk-17")

    assert pod["status"]["phase"] == "Succeeded"
    [container] = pod["status"]["containerStatuses"]
    assert container["state"]["terminated"]["exitCode"] == 0
    assert container["state"]["terminated"]["reason"] == "Completed"
    instance = instance_of(burst, created)
    assert instance.instance_type == "c7i.4xlarge"
    assert pod["status"]["podIP"] == instance.private_ip
    assert log_lines(burst, pod, "align") == [CPU_BATCH_CHECKSUM]
    eventually(lambda: terminated(burst, created), what="the instance terminated")
    assert reasons(burst, "biology", "genome-align-chunk-17")[:4] == [
        "Launching",
        "Launched",
        "Started",
        "Completed",
    ]


def test_failing_step_ends_failed_with_exit_3_and_its_stderr_logged(
    burst: Burst, burst_emulator: InstanceEmulator
) -> None:
    burst.start()
    [manifest] = case("03-failing-step.yaml")
    created = burst.create(manifest)

    pod = finished(burst, "default", "qc-check")

    assert pod["status"]["phase"] == "Failed"
    terminated_state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated_state["exitCode"], terminated_state["reason"]) == (3, "Error")
    assert log_lines(burst, pod, "qc") == ["qc: 3 samples below threshold"]
    eventually(lambda: terminated(burst, created), what="the instance terminated")
    assert "ContainerFailed" in reasons(burst, "default", "qc-check")


def test_readme_gpu_pod_runs_on_one_spot_p5_tagged_for_cost(
    burst: Burst, burst_emulator: InstanceEmulator
) -> None:
    burst.start()
    [manifest] = case("01-gpu-training-spot.yaml")
    created = burst.create(manifest)

    pod = finished(burst, "default", "gpu-training-job")

    assert pod["status"]["phase"] == "Succeeded"
    instance = instance_of(burst, created)
    assert (instance.instance_type, instance.spot) == ("p5.48xlarge", True)
    assert instance.tags[tags.POD] == "default/gpu-training-job"
    assert instance.tags[tags.POD_UID] == created["metadata"]["uid"]
    assert instance.tags[tags.CLUSTER] == burst.settings.cluster_name
    assert instance.tags[tags.MANAGED_BY] == "orca"
    assert instance.tags["department"] == burst.settings.department
    launched = [e for e in burst.events("default", "gpu-training-job") if e["reason"] == "Launched"]
    assert launched[0]["message"] == (
        f"Launched {instance.instance_id} p5.48xlarge spot in {instance.availability_zone}"
    )
    eventually(lambda: terminated(burst, created), what="the instance terminated")


def test_job_pod_runs_init_first_with_config_and_secret_env_that_leaks_nowhere(
    burst: Burst, burst_emulator: InstanceEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    config_map, secret, job = case("04-job-with-init-config-secret.yaml")
    secret_value = secret["stringData"]["WANDB_API_KEY"]
    burst.core.create_namespaced_config_map("default", config_map)
    burst.core.create_namespaced_secret("default", secret)
    caplog.set_level(logging.DEBUG, logger="orca")
    burst.start()
    created = burst.create(as_pod(job))
    name = created["metadata"]["name"]

    pod = finished(burst, "default", name)

    assert pod["status"]["phase"] == "Succeeded"
    [init] = pod["status"]["initContainerStatuses"]
    [main] = pod["status"]["containerStatuses"]
    assert init["state"]["terminated"]["finishedAt"] <= main["state"]["terminated"]["startedAt"]
    assert log_lines(burst, pod, "md") == ["inputs ready", "steps=5000"]

    instance = instance_of(burst, created)
    user_data = burst.aws.ec2.describe_instance_attribute(
        InstanceId=instance.instance_id, Attribute="userData"
    )["UserData"]["Value"]
    places = {
        "user data": base64.b64decode(user_data).decode(),
        "tags": repr(instance.tags),
        "events": repr(burst.events("default", name)),
        "pod": repr(burst.pod("default", name)),
        "runtime logs": caplog.text,
    }
    assert {where: secret_value in text for where, text in places.items()} == dict.fromkeys(
        places, False
    )


def test_pod_deleted_while_running_terminates_its_instance_and_is_released(
    burst: Burst, burst_emulator: InstanceEmulator
) -> None:
    burst.start()
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "long-run",
            "annotations": {"orca.research/instance-type": "m7i.large"},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "600"]}],
        },
    }
    created = burst.create(manifest)
    eventually(lambda: burst.phase("default", "long-run") == "Running", timeout=60, what="Running")
    running = burst.pod("default", "long-run")
    assert running["status"]["containerStatuses"][0]["ready"] is True  # type: ignore[index]

    burst.core.delete_namespaced_pod("long-run", "default")

    eventually(lambda: burst.pod("default", "long-run") is None, what="the pod released")
    eventually(lambda: terminated(burst, created), what="the instance terminated")


def test_runtime_restarted_while_a_pod_runs_adopts_its_instance_and_follows_it_to_the_end(
    burst: Burst, burst_emulator: InstanceEmulator
) -> None:
    burst.start()
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "outlives-restart",
            "annotations": {"orca.research/instance-type": "m7i.large"},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "sleep 6"]}
            ],
        },
    }
    created = burst.create(manifest)
    eventually(lambda: burst.phase("default", "outlives-restart") == "Running", what="Running")
    before = instance_of(burst, created)

    burst.stop()
    burst.start()
    pod = finished(burst, "default", "outlives-restart")

    assert pod["status"]["phase"] == "Succeeded"
    assert [i.instance_id for i in burst.instances(created["metadata"]["uid"])] == [
        before.instance_id
    ]
    assert "InstanceTerminated" not in reasons(burst, "default", "outlives-restart")
