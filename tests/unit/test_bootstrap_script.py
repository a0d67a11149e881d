"""The user data bootstrap run with bash, as cloud-init runs it, with stand-in commands.

``docker``, ``aws``, ``orca``, ``shutdown``, ``sleep``, ``systemctl``, ``iptables``,
``mkdir`` and ``timeout`` are small scripts on a PATH that holds nothing else but
``install``, ``cat``, ``basename``, ``awk`` and ``date``; each records its arguments (and
``docker login`` its standard input) in one log. The ``systemctl`` stand-in starts a unit
as systemd would, by running its ``ExecStart`` (here in the foreground), and the fixture
makes ``/run/systemd/system`` under the scratch root when it is there.
``ORCA_BOOTSTRAP_ROOT`` puts the files the script writes under that root. Whatever the
agent does, the last thing that happens must be the power-off. The metadata guard's rule
and its probe are tried on this machine's kernel in ``tests/integration/test_metadata_guard.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orca.bootstrap import POWEROFF_BY_BOOTSTRAP_VAR, AgentConfig, render_user_data
from tests.unit.test_bootstrap import ECR_IMAGE, OTHER_IMAGE, agent_config

ECR_REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
POWER_OFF = ["shutdown", "-h", "now"]
RULE = [
    *("OUTPUT", "-d", "169.254.169.254", "-m", "cgroup", "--path", "orcapods.slice"),
    *("-m", "comment", "--comment", "orca-imds-guard", "-j", "REJECT"),
]
# The guard without systemd: the pods' cgroup made, the rule looked for, then inserted,
# then proven by a probe from a cgroup inside the slice.
GUARD = [["mkdir", "-p"], ["iptables", "-w"], ["iptables", "-w"], ["mkdir", "-p"], ["timeout", "5"]]
COMMANDS = ("docker", "aws", "shutdown", "sleep", "iptables", "mkdir", "timeout")
HOUR = timedelta(hours=1)

# Each stand-in appends one JSON line: its name, its arguments, and what it was given.
_RECORDER = """#!/bin/bash
name=$(basename "$0")
stdin=""
if [ "$name $1" = "docker login" ]; then stdin=$(cat); fi
FAKE_NAME="$name" FAKE_STDIN="$stdin" "$FAKE_PYTHON" -c '
import json, os, sys
print(json.dumps({"argv": [os.environ["FAKE_NAME"], *sys.argv[1:]],
                  "stdin": os.environ["FAKE_STDIN"],
                  "docker_config": os.environ.get("DOCKER_CONFIG")}))' "$@" >> "$FAKE_LOG"
case "$name $1" in
  "aws ecr") echo "ecr-token-not-a-secret" ;;
  "docker pull") exit "${FAKE_PULL_STATUS:-0}" ;;
  "docker run") exit "${FAKE_RUN_STATUS:-0}" ;;
  "orca agent") exit "${FAKE_ORCA_STATUS:-0}" ;;
  # From the pods' cgroup, IMDS refuses the guard's probe unless told otherwise.
  "timeout 5") exit "${FAKE_PROBE_STATUS:-1}" ;;
  # The guard's rule is not there until inserted; -C answers 1 for a missing rule.
  "iptables -w")
    if [ "$2" = "-C" ]; then exit "${FAKE_RULE_PRESENT_STATUS:-1}"; fi
    exit "${FAKE_IPTABLES_STATUS:-0}" ;;
  "systemctl start")
    while IFS= read -r line; do
      case "$line" in ExecStart=*) eval "${line#ExecStart=}" ;; esac
    done < "$ORCA_BOOTSTRAP_ROOT/etc/systemd/system/${@: -1}" ;;
esac
exit 0
"""


@dataclass
class Boot:
    """One run of the bootstrap: its exit status, stderr and the commands it ran."""

    status: int
    stderr: str
    calls: list[dict[str, object]]
    root: Path

    @property
    def argvs(self) -> list[list[str]]:
        return [list(call["argv"]) for call in self.calls]  # type: ignore[call-overload]

    def ran(self, *prefix: str) -> list[list[str]]:
        return [argv for argv in self.argvs if argv[: len(prefix)] == list(prefix)]


@pytest.fixture
def boot(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Runs the script for a config with the given stand-ins present; see :class:`Boot`."""

    def run(
        config: AgentConfig,
        commands: tuple[str, ...] = COMMANDS,
        **statuses: int,
    ) -> Boot:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for name in commands:
            (bin_dir / name).write_text(_RECORDER)
            (bin_dir / name).chmod(0o755)
        # The only real commands the script may reach: nothing that could power this off.
        for name in ("install", "cat", "basename", "awk", "date"):
            real = shutil.which(name)
            assert real is not None
            (bin_dir / name).symlink_to(real)

        script = tmp_path / "user-data"
        script.write_text(render_user_data(config))
        log = tmp_path / "calls.jsonl"
        root = tmp_path / "root"
        (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
        if "systemctl" in commands:  # booted with systemd, as sd_booted() tells
            (root / "run/systemd/system").mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": str(bin_dir),
            "ORCA_BOOTSTRAP_ROOT": str(root),
            "FAKE_LOG": str(log),
            "FAKE_PYTHON": sys.executable,
            **{f"FAKE_{key.upper()}": str(value) for key, value in statuses.items()},
        }
        done = subprocess.run(
            ["/bin/bash", str(script)], env=env, capture_output=True, text=True, timeout=60
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return Boot(done.returncode, done.stderr, calls, root)

    return run


def test_the_agent_runs_from_its_ecr_image_after_sign_in_then_the_instance_powers_off(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    config = agent_config()

    result = boot(config)

    assert result.status == 0, result.stderr
    assert [argv[:2] for argv in result.argvs] == [
        *GUARD,
        ["aws", "ecr"],
        ["docker", "login"],
        ["docker", "pull"],
        ["docker", "run"],
        ["shutdown", "-h"],
    ]
    assert result.ran("aws") == [["aws", "ecr", "get-login-password", "--region", "eu-west-1"]]
    docker_login = ["docker", "login"]
    [login] = [c for c in result.calls if c["argv"][:2] == docker_login]  # type: ignore[index]
    assert login["argv"] == [
        "docker",
        "login",
        "--username",
        "AWS",
        "--password-stdin",
        ECR_REGISTRY,
    ]
    assert login["stdin"] == "ecr-token-not-a-secret"
    # The sign-in is kept on the tmpfs, not in root's home on the instance's disk.
    assert login["docker_config"] == f"{result.root}/run/orca-bootstrap"
    assert result.ran("docker", "pull") == [["docker", "pull", "--quiet", ECR_IMAGE]]
    [run] = result.ran("docker", "run")
    assert run[-4:] == [ECR_IMAGE, "agent", "--config", "/etc/orca/agent.json"]
    assert f"{POWEROFF_BY_BOOTSTRAP_VAR}=1" in run
    assert f"{result.root}/run/orca:/run/orca" in run
    assert result.argvs[-1] == POWER_OFF

    # What the agent reads in its container is the config of this launch.
    written = result.root / "etc/orca/agent.json"
    assert AgentConfig.model_validate_json(written.read_text()) == config
    assert (written.parent.stat().st_mode & 0o777) == 0o700
    assert ((result.root / "run/orca").stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize("status", [1, 137])
def test_an_agent_that_fails_or_is_killed_still_powers_the_instance_off(
    boot,  # type: ignore[no-untyped-def]
    status: int,
) -> None:
    result = boot(agent_config(), run_status=status)

    assert result.status == status
    assert result.argvs[-1] == POWER_OFF
    assert f"the agent exited with status {status}" in result.stderr


def test_an_image_that_cannot_be_pulled_is_tried_five_times_then_the_instance_powers_off(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    result = boot(agent_config(agent_image=OTHER_IMAGE), pull_status=1)

    assert result.status != 0
    assert len(result.ran("docker", "pull")) == 5
    assert result.ran("sleep") == [["sleep", "10"]] * 4
    assert result.ran("docker", "run") == []
    assert result.argvs[-1] == POWER_OFF


def test_an_ami_with_orca_runs_the_agent_directly_then_powers_off(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    result = boot(agent_config(), commands=("orca", *COMMANDS))

    assert result.status == 0, result.stderr
    assert result.argvs[len(GUARD) :] == [
        ["orca", "agent", "--config", f"{result.root}/etc/orca/agent.json"],
        POWER_OFF,
    ]


def test_a_failing_agent_on_an_ami_with_orca_still_powers_off(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    result = boot(agent_config(), commands=("orca", *COMMANDS), orca_status=3)

    assert result.status == 3
    assert result.argvs[-1] == POWER_OFF


def test_without_the_aws_cli_the_ecr_image_is_pulled_anyway_and_the_log_says_why(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    result = boot(agent_config(), commands=tuple(c for c in COMMANDS if c != "aws"))

    assert result.status == 0, result.stderr
    assert f"no aws command to sign in to {ECR_REGISTRY}; pulling anyway" in result.stderr
    assert [argv[:2] for argv in result.argvs] == [
        *GUARD,
        ["docker", "pull"],
        ["docker", "run"],
        ["shutdown", "-h"],
    ]


def test_an_image_outside_ecr_is_pulled_without_sign_in(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    result = boot(agent_config(agent_image=OTHER_IMAGE))

    assert result.status == 0, result.stderr
    assert result.ran("aws") == []
    assert result.ran("docker", "login") == []
    assert result.ran("docker", "run")


def test_with_neither_orca_nor_an_image_the_instance_powers_off_at_once(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    result = boot(agent_config(agent_image=None))

    assert result.status == 1
    assert [argv[:2] for argv in result.argvs] == [*GUARD, ["shutdown", "-h"]]
    assert "no orca command on this AMI and no agent image configured" in result.stderr


def test_under_systemd_the_agent_runs_as_a_unit_after_docker_started_without_blocking(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    commands = (*COMMANDS, "systemctl")

    result = boot(agent_config(), commands=commands)

    # docker.service waits for cloud-init, which waits for the user data: starting the agent
    # and waiting for it there would never end.
    assert result.status == 0, result.stderr
    assert result.argvs[0][:2] == ["shutdown", "-h"]  # the deadline's backstop, first
    assert result.ran("systemctl") == [
        ["systemctl", "mask", "--now", "ecs.service"],  # the AMI's ECS agent never starts
        ["systemctl", "daemon-reload"],
        ["systemctl", "start", "--no-block", "orca-agent.service"],
        ["systemctl", "start", "orcapods.slice"],
    ]
    assert (result.root / "etc/systemd/system/orcapods.slice").read_text().startswith("[Unit]")
    unit = (result.root / "etc/systemd/system/orca-agent.service").read_text()
    assert "After=docker.service" in unit and "Wants=docker.service" in unit
    assert f"ExecStart=/bin/bash {result.root}/etc/orca/run-agent.sh" in unit
    # The unit, not the user data, ran the agent and then powered off, exactly once; under
    # systemd the pods' cgroup is a slice that systemd makes.
    assert [argv[:2] for argv in result.argvs[4:]] == [
        ["systemctl", "start"],
        ["iptables", "-w"],
        ["iptables", "-w"],
        ["mkdir", "-p"],
        ["timeout", "5"],
        ["aws", "ecr"],
        ["docker", "login"],
        ["docker", "pull"],
        ["docker", "run"],
        ["shutdown", "-h"],
    ]


def test_under_systemd_a_failing_agent_still_powers_off(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    commands = (*COMMANDS, "systemctl")

    result = boot(agent_config(), commands=commands, run_status=137)

    assert result.ran(*POWER_OFF) == [POWER_OFF]
    assert result.argvs[-1] == POWER_OFF
    assert "the agent exited with status 137" in result.stderr


def _cgroup2_mount() -> str:
    with open("/proc/mounts") as mounts:
        return next(line.split()[1] for line in mounts if line.split()[2] == "cgroup2")


def test_the_metadata_guard_is_in_place_before_the_agent_starts(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    result = boot(agent_config())

    assert result.status == 0, result.stderr
    slice_dir = f"{_cgroup2_mount()}/orcapods.slice"
    assert result.argvs[:4] == [
        ["mkdir", "-p", slice_dir],
        ["iptables", "-w", "-C", *RULE],
        ["iptables", "-w", "-I", *RULE],
        ["mkdir", "-p", f"{result.root}{slice_dir}/orca-guard-probe"],
    ]
    [probe] = result.ran("timeout")
    assert probe[:3] == ["timeout", "5", "bash"] and "/dev/tcp/169.254.169.254/80" in probe[4]
    assert result.argvs[5][:2] == ["aws", "ecr"]
    assert "containers in orcapods.slice are refused 169.254.169.254" in result.stderr


def test_a_guard_already_in_place_is_not_inserted_twice(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    result = boot(agent_config(), rule_present_status=0)

    assert result.status == 0, result.stderr
    assert result.ran("iptables") == [["iptables", "-w", "-C", *RULE]]


@pytest.mark.parametrize("systemd", [False, True])
def test_without_the_guard_no_pod_runs_and_the_instance_powers_off(
    boot,  # type: ignore[no-untyped-def]
    systemd: bool,
) -> None:
    commands = (*COMMANDS, "systemctl") if systemd else COMMANDS

    result = boot(agent_config(), commands=commands, iptables_status=4)

    assert result.ran("docker", "run") == [] and result.ran("aws") == []
    assert result.argvs[-1] == POWER_OFF
    assert result.ran(*POWER_OFF) == [POWER_OFF]
    assert "the metadata guard could not be installed; not running the pod" in result.stderr


def test_a_guard_whose_probe_still_reaches_imds_runs_no_pod(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    result = boot(agent_config(), probe_status=0)

    assert result.ran("docker", "run") == []
    assert result.argvs[-1] == POWER_OFF
    assert "169.254.169.254 still answers from orcapods.slice" in result.stderr


@pytest.mark.parametrize(
    ("deadline_in", "minutes"), [(timedelta(hours=1), (61, 62)), (-HOUR, (0,))]
)
def test_under_systemd_the_power_off_is_scheduled_at_the_deadline_and_its_grace(
    boot,  # type: ignore[no-untyped-def]
    deadline_in: timedelta,
    minutes: tuple[int, ...],
) -> None:
    deadline = (datetime.now(UTC) + deadline_in).replace(microsecond=0)

    result = boot(agent_config(deadline=deadline), commands=(*COMMANDS, "systemctl"))

    [backstop, *rest] = result.ran("shutdown")
    assert backstop[:2] == ["shutdown", "-h"] and int(backstop[2].lstrip("+")) in minutes
    assert rest == [POWER_OFF]


def test_without_systemd_no_power_off_is_scheduled_and_the_log_says_so(
    boot,  # type: ignore[no-untyped-def]
) -> None:
    result = boot(agent_config())

    assert result.ran("shutdown") == [POWER_OFF]
    assert "no systemd to schedule a power-off; the agent keeps the deadline" in result.stderr
