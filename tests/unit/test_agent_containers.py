"""The docker invocations the agent generates, pinned for the shared cases, and the pod phase."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest

from orca.agent import containers
from orca.agent.containers import PodRef, RuntimeOptions
from orca.agent.docker import parse_docker_time
from orca.agent.logship import parse_line
from orca.agent.quantities import docker_bytes, docker_cpus
from orca.agent.status import ContainerStatus, compute_phase
from tests.unit.helpers import case_documents

ENV_FILE = "/tmp/orca-env-x/env"


def pod_of(filename: str, kind: str = "Pod") -> tuple[PodRef, dict[str, Any]]:
    document = next(d for d in case_documents(filename) if d["kind"] == kind)
    if kind == "Job":
        template = document["spec"]["template"]
        metadata = {**document["metadata"], **template.get("metadata", {})}
        document = {"metadata": metadata, "spec": template["spec"]}
    metadata = document["metadata"]
    return PodRef(metadata["uid"], metadata["namespace"], metadata["name"]), document["spec"]


def invocation_for(
    pod: PodRef,
    spec: dict[str, Any],
    name: str,
    env: dict[str, str] | None = None,
    options: RuntimeOptions | None = None,
) -> containers.CreateInvocation:
    everything = [*(spec.get("initContainers") or []), *spec["containers"]]
    container = next(c for c in everything if c["name"] == name)
    volumes = containers.plan_volumes(pod, spec)
    gpus = {
        **containers.gpu_assignments(spec.get("initContainers") or []),
        **containers.gpu_assignments(spec["containers"]),
    }
    return containers.create_invocation(
        pod=pod,
        spec=spec,
        container=container,
        env=env or {},
        volumes=volumes,
        gpus=gpus.get(name),
        env_file=ENV_FILE,
        options=options or RuntimeOptions(),
    )


def test_readme_gpu_pod_runs_with_8_gpus_192_cpus_and_1024gi_on_the_host_network() -> None:
    pod, spec = pod_of("01-gpu-training-spot.yaml")

    invocation = invocation_for(pod, spec, "trainer")

    assert invocation.argv == (
        "create",
        "--name",
        "orca-00000000-trainer",
        "--network",
        "host",
        "--cgroup-parent",
        "orcapods.slice",
        "--pull",
        "never",
        "--label",
        f"orca.research/pod-uid={pod.uid}",
        "--label",
        "orca.research/pod=default/gpu-training-job",
        "--label",
        "orca.research/container=trainer",
        "--ulimit",
        "nofile=1048576:1048576",
        "--ulimit",
        "memlock=-1:-1",
        "--cpus",
        "192",
        "--memory",
        "1099511627776",
        "--memory-swap",
        "1099511627776",
        "--gpus",
        "8",
        "--cap-drop",
        "NET_RAW",
        "--entrypoint",
        "python",
        "pytorch/pytorch:2.1.0-cuda12.1-cudnn8-runtime",
        "train.py",
    )
    assert invocation.env_file_lines == ()


def test_gpus_are_left_out_on_a_host_without_them() -> None:
    pod, spec = pod_of("01-gpu-training-spot.yaml")

    argv = invocation_for(pod, spec, "trainer", options=RuntimeOptions(ulimits=(), gpus=False)).argv

    assert "--gpus" not in argv
    assert "--ulimit" not in argv


def test_job_init_container_writes_to_the_shared_emptydir_volume() -> None:
    pod, spec = pod_of("04-job-with-init-config-secret.yaml", kind="Job")

    work = containers.plan_volumes(pod, spec).volumes["work"]

    assert containers.volume_create_argv(pod, work) == [
        "volume",
        "create",
        "--label",
        f"orca.research/pod-uid={pod.uid}",
        "--label",
        "orca.research/pod=default/md-simulation",
        "orca-00000000-work",
    ]
    assert invocation_for(pod, spec, "fetch-inputs").argv == (
        "create",
        "--name",
        "orca-00000000-fetch-inputs",
        "--network",
        "host",
        "--cgroup-parent",
        "orcapods.slice",
        "--pull",
        "never",
        "--label",
        f"orca.research/pod-uid={pod.uid}",
        "--label",
        "orca.research/pod=default/md-simulation",
        "--label",
        "orca.research/container=fetch-inputs",
        "--ulimit",
        "nofile=1048576:1048576",
        "--ulimit",
        "memlock=-1:-1",
        "--cap-drop",
        "NET_RAW",
        "--mount",
        "type=volume,source=orca-00000000-work,target=/scratch",
        "--entrypoint",
        "sh",
        "public.ecr.aws/docker/library/busybox:1.36",
        "-c",
        "echo inputs ready > /scratch/ready",
    )


def test_secret_env_value_goes_to_the_env_file_never_to_argv() -> None:
    pod, spec = pod_of("04-job-with-init-config-secret.yaml", kind="Job")
    env = {"STEPS": "5000", "WANDB_API_KEY": "s3cr3t-not-for-logs-0f9c"}

    invocation = invocation_for(pod, spec, "md", env=env)

    assert invocation.argv == (
        "create",
        "--name",
        "orca-00000000-md",
        "--network",
        "host",
        "--cgroup-parent",
        "orcapods.slice",
        "--pull",
        "never",
        "--label",
        f"orca.research/pod-uid={pod.uid}",
        "--label",
        "orca.research/pod=default/md-simulation",
        "--label",
        "orca.research/container=md",
        "--ulimit",
        "nofile=1048576:1048576",
        "--ulimit",
        "memlock=-1:-1",
        "--gpus",
        "1",
        "--cap-drop",
        "NET_RAW",
        "--env-file",
        ENV_FILE,
        "--mount",
        "type=volume,source=orca-00000000-work,target=/scratch",
        "--entrypoint",
        "sh",
        "nvcr.io/nvidia/pytorch:24.05-py3",
        "-c",
        "cat /scratch/ready && echo steps=$STEPS",
    )
    assert not any("s3cr3t" in arg for arg in invocation.argv)
    assert invocation.env_file_lines == ("STEPS=5000", "WANDB_API_KEY=s3cr3t-not-for-logs-0f9c")


def test_multiline_env_value_is_passed_by_name_through_the_cli_environment() -> None:
    pod, spec = pod_of("02-cpu-batch.yaml")
    key = "-----BEGIN KEY-----\nabc\n-----END KEY-----"

    invocation = invocation_for(pod, spec, "align", env={"TLS_KEY": key})

    at = invocation.argv.index("-e")
    assert invocation.argv[at : at + 2] == ("-e", "TLS_KEY")
    assert invocation.cli_env == {"TLS_KEY": key}
    assert "--env-file" not in invocation.argv


def test_the_process_joins_the_pods_fs_group_and_supplemental_groups() -> None:
    pod, spec = pod_of("02-cpu-batch.yaml")
    spec["securityContext"] = {
        "runAsUser": 1000,
        "fsGroup": 2000,
        "supplementalGroups": [3000, 2000],
    }

    argv = invocation_for(pod, spec, "align").argv

    assert argv[argv.index("--user") + 1] == "1000"
    added = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--group-add"]
    assert added == ["2000", "3000"]


def test_no_privilege_escalation_becomes_no_new_privileges_and_only_when_false() -> None:
    pod, spec = pod_of("02-cpu-batch.yaml")
    spec["securityContext"] = {"allowPrivilegeEscalation": True}
    spec["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False}

    refused = invocation_for(pod, spec, "align").argv
    del spec["containers"][0]["securityContext"]
    allowed = invocation_for(pod, spec, "align").argv

    assert refused[refused.index("--security-opt") + 1] == "no-new-privileges"
    assert "--security-opt" not in allowed


@pytest.mark.parametrize(
    ("context", "image_user", "refusal"),
    [
        ({"runAsNonRoot": True}, "", "image will run as root"),
        ({"runAsNonRoot": True}, "root", "image will run as root"),
        ({"runAsNonRoot": True}, "0:0", "image will run as root"),
        ({"runAsNonRoot": True}, "nobody", "non-numeric user (nobody)"),
        ({"runAsNonRoot": True, "runAsUser": 0}, "1000", "runAsUser breaks non-root policy"),
        ({"runAsNonRoot": True}, "1000:1000", None),
        ({"runAsNonRoot": True, "runAsUser": 1000}, "", None),
        ({"runAsNonRoot": False}, "", None),
        ({}, "", None),
    ],
)
def test_run_as_non_root_is_checked_against_the_user_the_container_would_run_as(
    context: dict[str, Any], image_user: str, refusal: str | None
) -> None:
    # The pod-level context, as most manifests set it.
    spec = {"securityContext": context, "containers": [{"name": "c", "image": "busybox:1.36"}]}

    found = containers.non_root_violation(spec, spec["containers"][0], image_user)

    assert (found is None) if refusal is None else (found is not None and refusal in found)


@pytest.mark.parametrize(
    ("context", "dropped"),
    [
        ({}, True),
        ({"capabilities": {"add": ["CAP_NET_RAW"]}}, False),
        ({"capabilities": {"add": ["NET_ADMIN"]}}, True),
        ({"privileged": True}, False),
    ],
)
def test_net_raw_is_dropped_unless_the_container_asks_for_it(
    context: dict[str, Any], dropped: bool
) -> None:
    pod, spec = pod_of("02-cpu-batch.yaml")
    spec["containers"][0]["securityContext"] = context

    argv = list(invocation_for(pod, spec, "align").argv)

    pairs = list(itertools.pairwise(argv))
    assert (("--cap-drop", "NET_RAW") in pairs) is dropped


def test_args_alone_keep_the_image_entrypoint_and_references_are_expanded() -> None:
    pod, spec = pod_of("02-cpu-batch.yaml")
    spec["containers"][0] = {
        "name": "align",
        "image": "busybox:1.36",
        "args": ["--chunk", "$(CHUNK)", "$$(CHUNK)", "$(UNSET)"],
        "workingDir": "/data",
        "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": True},
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
    }
    spec["securityContext"] = {"runAsGroup": 2000}

    argv = invocation_for(pod, spec, "align", env={"CHUNK": "17"}).argv

    assert "--entrypoint" not in argv
    assert argv[-5:] == ("busybox:1.36", "--chunk", "17", "$(CHUNK)", "$(UNSET)")
    assert argv[argv.index("--user") + 1] == "1000:2000"
    assert "--read-only" in argv
    assert argv[argv.index("-w") + 1] == "/data"
    assert argv[argv.index("--cpus") + 1] == "0.5"
    assert argv[argv.index("--memory") + 1] == str(512 * 2**20)


def test_containers_running_together_get_disjoint_gpus() -> None:
    pair = [
        {"name": "a", "resources": {"limits": {"nvidia.com/gpu": 2}}},
        {"name": "b", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
        {"name": "c"},
    ]

    assert containers.gpu_assignments(pair) == {"a": '"device=0,1"', "b": '"device=2"'}


def test_memory_emptydir_is_a_tmpfs_volume_and_subpath_a_bind_mount() -> None:
    pod = PodRef("1234abcd-aaaa-bbbb-cccc-000000000000", "ns", "p")
    spec = {
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
        "containers": [],
    }
    plan = containers.plan_volumes(pod, spec)
    plan = replace(plan, mountpoints={"orca-1234abcd-shm": "/v/shm"})

    assert containers.volume_create_argv(pod, plan.volumes["shm"]) == [
        "volume",
        "create",
        "--label",
        f"orca.research/pod-uid={pod.uid}",
        "--label",
        "orca.research/pod=ns/p",
        "--driver",
        "local",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        f"o=size={2**30}",
        "orca-1234abcd-shm",
    ]
    mount = {"name": "shm", "mountPath": "/dev/shm", "subPath": "a", "readOnly": True}
    assert containers._mount_args(mount, plan) == [
        "--mount",
        "type=bind,source=/v/shm/a,target=/dev/shm,readonly",
    ]


def test_file_volumes_are_bind_mounted_read_only_from_the_pods_private_directory() -> None:
    pod = PodRef("1234abcd-aaaa-bbbb-cccc-000000000000", "ns", "p")
    spec = {
        "volumes": [
            {"name": "creds", "secret": {"secretName": "s"}},
            {"name": "config", "configMap": {"name": "c"}},
            {"name": "kube-api-access-x1", "projected": {"sources": []}},
            {"name": "info", "downwardAPI": {"items": []}},
        ],
        "containers": [
            {
                "name": "train",
                "image": "busybox:1.36",
                "volumeMounts": [
                    {"name": "creds", "mountPath": "/etc/creds"},
                    {"name": "config", "mountPath": "/etc/app/app.yaml", "subPath": "app.yaml"},
                    {
                        "name": "kube-api-access-x1",
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        "readOnly": True,
                    },
                    {"name": "info", "mountPath": "/etc/pod info"},
                ],
            }
        ],
    }
    options = RuntimeOptions(ulimits=(), pod_root="/run/orca/pods")

    argv = invocation_for(pod, spec, "train", options=options).argv

    base = f"/run/orca/pods/{pod.uid}/volumes"
    mounts = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--mount"]
    assert mounts == [
        f"type=bind,source={base}/creds,target=/etc/creds,readonly",
        f"type=bind,source={base}/config/app.yaml,target=/etc/app/app.yaml,readonly",
        f"type=bind,source={base}/kube-api-access-x1,"
        "target=/var/run/secrets/kubernetes.io/serviceaccount,readonly",
        f"type=bind,source={base}/info,target=/etc/pod info,readonly",
    ]


def test_volumes_the_agent_cannot_provide_are_listed_as_unsupported() -> None:
    plan = containers.plan_volumes(
        PodRef("u", "ns", "p"),
        {
            "volumes": [
                {"name": "data", "hostPath": {"path": "/mnt"}},
                {"name": "e", "emptyDir": {}},
            ]
        },
    )

    assert plan.unsupported == ("data (hostPath)",)


def test_allowed_privilege_becomes_docker_flags() -> None:
    pod = PodRef("u", "ns", "p")
    context = {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]}}
    spec = {"containers": [{"name": "c", "image": "i", "securityContext": context}]}

    argv = invocation_for(pod, spec, "c", options=RuntimeOptions(ulimits=())).argv

    assert argv[-6:] == ("--privileged", "--cap-add", "SYS_ADMIN", "--cap-drop", "ALL", "i")


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("busybox:1.36", "IfNotPresent"),
        ("registry:5000/team/img", "Always"),
        ("img@sha256:abc", "IfNotPresent"),
    ],
)
def test_image_pull_policy_defaults_as_the_api_server_does(image: str, policy: str) -> None:
    assert containers.pull_policy({"image": image}) == policy


@pytest.mark.parametrize(
    ("quantity", "cpus"), [("192", "192"), ("500m", "0.5"), ("1.5", "1.5"), (4, "4")]
)
def test_cpu_quantities_become_docker_cpus(quantity: str, cpus: str) -> None:
    assert docker_cpus(quantity) == cpus


@pytest.mark.parametrize(
    ("quantity", "size"),
    [
        ("1024Gi", str(1024 * 2**30)),
        ("16Gi", str(16 * 2**30)),
        ("1G", "1000000000"),
        ("129e6", "129000000"),
        ("128974848", "128974848"),
    ],
)
def test_memory_quantities_become_bytes(quantity: str, size: str) -> None:
    assert docker_bytes(quantity) == size


def test_docker_timestamps_keep_microseconds_and_logs_lines_split() -> None:
    when = parse_docker_time("2026-12-01T10:00:00.123456789Z")
    assert when is not None and when.isoformat() == "2026-12-01T10:00:00.123456+00:00"
    assert parse_docker_time("0001-01-01T00:00:00Z") is None

    line = parse_line(b"2026-12-01T10:00:00.5Z qc: 3 samples below threshold\n")
    assert line is not None and line[1] == "qc: 3 samples below threshold"


def done(exit_code: int) -> ContainerStatus:
    return ContainerStatus(
        "c", "i", state="terminated", reason=None, exit_code=exit_code, has_terminated=True
    )


RUNNING = ContainerStatus("c", "i", state="running", reason=None)
WAITING = ContainerStatus("c", "i")


@pytest.mark.parametrize(
    ("policy", "init", "main", "phase"),
    [
        ("Never", [], [WAITING], "Pending"),
        ("Never", [], [RUNNING, done(1)], "Running"),
        ("Never", [], [done(0), done(0)], "Succeeded"),
        ("Never", [], [done(0), done(137)], "Failed"),
        ("OnFailure", [], [done(0), done(1)], "Running"),
        ("OnFailure", [], [done(0)], "Succeeded"),
        ("Always", [], [done(0)], "Running"),
        ("Never", [done(2)], [WAITING], "Failed"),
        ("OnFailure", [done(2)], [WAITING], "Pending"),
        ("Never", [done(0)], [WAITING], "Pending"),
    ],
)
def test_pod_phase_follows_the_kubelet(
    policy: str, init: list[ContainerStatus], main: list[ContainerStatus], phase: str
) -> None:
    assert compute_phase(policy, init, main) == phase
