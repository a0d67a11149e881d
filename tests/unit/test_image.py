"""The Dockerfile, checked offline: no registry is reachable here, so the image is never built
in these tests. What they hold to is what the Deployment and the bootstrap rely on."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from orca_infra.cluster import RUNTIME_USER
from orca_infra.settings import HEALTH_PORT, KUBELET_PORT

from orca.bootstrap import render_user_data
from orca.cli import build_parser
from tests.unit.test_bootstrap import agent_config, docker_run_argv

REPOSITORY = Path(__file__).resolve().parents[2]
Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined."""
    text = (REPOSITORY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    parsed = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def final_stage() -> list[Instruction]:
    return stages()[-1]


def base_images() -> dict[str, str]:
    return dict(
        rest.split("=", 1)
        for keyword, rest in instructions()
        if keyword == "ARG" and rest.split("=")[0].endswith("_IMAGE")
    )


def test_the_bases_are_pinned_by_exact_tag() -> None:
    bases = base_images()

    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", bases["PYTHON_IMAGE"])
    assert re.fullmatch(r"docker:\d+\.\d+\.\d+-cli", bases["DOCKER_CLI_IMAGE"])
    assert final_stage()[0] == ("FROM", "${PYTHON_IMAGE}")


def test_the_runtime_runs_as_the_deployments_user() -> None:
    [user] = [rest for keyword, rest in final_stage() if keyword == "USER"]

    assert user == f"{RUNTIME_USER}:{RUNTIME_USER}"


def test_the_entrypoint_is_the_orca_command_with_its_run_and_agent_subcommands() -> None:
    stage = dict(final_stage())
    scripts = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]["scripts"]
    subcommands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]

    assert json.loads(stage["ENTRYPOINT"]) == ["orca"]
    assert json.loads(stage["CMD"]) == ["run"]
    assert "orca" in scripts
    # The Deployment runs `orca run`; the bootstrap passes `agent --config ...` to the image.
    assert {"run", "agent"} <= set(subcommands)
    after_image = docker_run_argv(render_user_data(agent_config()))[-3:]
    assert after_image[0] == "agent"


def test_the_project_is_installed_with_the_pinned_constraints_from_binary_wheels() -> None:
    build = next(stage for stage in stages() if stage[0][1].endswith(" AS build"))
    installs = [rest for keyword, rest in build if keyword == "RUN" and "pip install" in rest]

    [install] = [rest for rest in installs if "/opt/orca/bin/pip install" in rest]
    assert "-c constraints.txt" in install
    assert "--only-binary=:all:" in install
    assert ("COPY", "--from=build /opt/orca /opt/orca") in final_stage()


def test_the_final_stage_has_the_docker_cli_and_no_build_tools() -> None:
    final = final_stage()
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")

    assert ("COPY", "--from=docker-cli /usr/local/bin/docker /usr/local/bin/docker") in final
    assert "docker --version" in runs
    assert not re.search(r"apt-get|pip install|gcc|build-essential", runs)


def test_the_image_exposes_the_ports_the_deployment_names() -> None:
    [exposed] = [rest for keyword, rest in final_stage() if keyword == "EXPOSE"]

    assert {int(port) for port in exposed.split()} == {KUBELET_PORT, HEALTH_PORT}


@pytest.mark.parametrize(
    "label",
    [
        "org.opencontainers.image.title",
        "org.opencontainers.image.description",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
    ],
)
def test_the_image_carries_oci_labels(label: str) -> None:
    labels = " ".join(rest for keyword, rest in final_stage() if keyword == "LABEL")

    assert f"{label}=" in labels


def test_the_build_context_holds_what_the_build_copies() -> None:
    ignored = (REPOSITORY / ".dockerignore").read_text().splitlines()

    assert "*" in ignored
    assert {"!pyproject.toml", "!constraints.txt", "!runtime/"} <= set(ignored)


def test_the_agent_config_path_is_where_the_bootstrap_mounts_it() -> None:
    argv = docker_run_argv(render_user_data(agent_config()))

    assert "/etc/orca:/etc/orca:ro" in argv
    assert argv[-1].startswith("/etc/orca/")
