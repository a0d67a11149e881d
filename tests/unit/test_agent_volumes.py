"""The agent writes volume files root-only and pulls with a per-image Docker config."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from orca import registry_auth
from orca.agent.docker import DockerCli
from orca.agent.registry import PullCredentials
from orca.agent.volumes import UnsafeVolumePath, make_pod_directory, write_volumes
from orca.bundle import BundleFile

ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/trainer:2.1"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_volume_files_get_their_modes_under_a_root_only_pod_directory(tmp_path: Path) -> None:
    pod_dir = make_pod_directory(str(tmp_path / "pods" / "uid-1"))
    volume = pod_dir / "volumes" / "creds"
    contents = {
        "creds": [
            BundleFile.of("wandb/key", b"s3cr3t", 0o400),
            BundleFile.of("user", b"ana", 0o644),
        ]
    }

    write_volumes({"creds": str(volume), "empty": str(pod_dir / "volumes" / "empty")}, contents)

    assert mode(pod_dir) == 0o700
    assert mode(volume) == 0o755
    assert (volume / "wandb" / "key").read_bytes() == b"s3cr3t"
    assert mode(volume / "wandb" / "key") == 0o400
    assert mode(volume / "user") == 0o644
    assert list((pod_dir / "volumes" / "empty").iterdir()) == []


def test_fs_group_owns_the_files_and_can_read_them(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's group to another needs root")
    volume = tmp_path / "v"

    write_volumes({"v": str(volume)}, {"v": [BundleFile.of("k", b"x", 0o400)]}, fs_group=2000)

    assert (volume / "k").stat().st_gid == 2000
    assert mode(volume / "k") == 0o440


@pytest.mark.parametrize("path", ["/etc/passwd", "../escape", "a/../../b", ""])
def test_paths_leaving_the_volume_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(UnsafeVolumePath):
        write_volumes({"v": str(tmp_path / "v")}, {"v": [BundleFile.of(path, b"x", 0o644)]})


@pytest.mark.parametrize(
    ("image", "host", "path"),
    [
        ("busybox", "docker.io", "library/busybox"),
        ("team/img:1", "docker.io", "team/img"),
        ("registry.example.edu:5000/lab/img:2", "registry.example.edu:5000", "lab/img"),
        ("localhost/img@sha256:abc", "localhost", "img"),
        (ECR_IMAGE, "123456789012.dkr.ecr.us-east-1.amazonaws.com", "team/trainer"),
    ],
)
def test_image_references_name_their_registry(image: str, host: str, path: str) -> None:
    assert registry_auth.image_registry(image) == (host, path)


def test_credentials_match_as_the_kubelets_keyring_does() -> None:
    credentials = {
        "https://*.example.edu/lab": {"auth": "lab"},
        "registry.example.edu": {"auth": "any"},
        "https://index.docker.io/v1/": {"auth": "hub"},
    }

    assert registry_auth.credential_for("registry.example.edu/lab/img", credentials) == {
        "auth": "lab"
    }
    assert registry_auth.credential_for("registry.example.edu/other/img", credentials) == {
        "auth": "any"
    }
    assert registry_auth.credential_for("busybox:1.36", credentials) == {"auth": "hub"}
    assert registry_auth.credential_for("registry.example.edu:5000/x", credentials) is None


class FakeEcr:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def get_authorization_token(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        token = base64.b64encode(b"AWS:ecr-password").decode()
        return {"authorizationData": [{"authorizationToken": token}]}


def test_a_pull_secret_is_written_as_a_private_docker_config_for_that_image(
    tmp_path: Path,
) -> None:
    auth = base64.b64encode(b"robot:pw").decode()
    pulls = PullCredentials(str(tmp_path / "docker"), {"registry.example.edu": {"auth": auth}})

    directory = pulls.config_dir("registry.example.edu/lab/img:1")

    assert directory == str(tmp_path / "docker" / "registry.example.edu")
    config = Path(directory) / "config.json"
    assert json.loads(config.read_text()) == {"auths": {"registry.example.edu": {"auth": auth}}}
    assert mode(Path(directory)) == 0o700
    assert mode(config) == 0o600
    assert pulls.config_dir("busybox:1.36") is None


def test_pulls_from_two_registries_at_once_never_share_a_docker_config(tmp_path: Path) -> None:
    lab = base64.b64encode(b"robot:pw").decode()
    other = base64.b64encode(b"other:pw2").decode()
    pulls = PullCredentials(
        str(tmp_path / "docker"),
        {"registry.example.edu": {"auth": lab}, "ghcr.io": {"auth": other}},
    )

    first = pulls.config_dir("registry.example.edu/lab/img:1")
    second = pulls.config_dir("ghcr.io/lab/tool:2")

    assert first is not None and second is not None and first != second
    # Written second, the other registry's config leaves the first one's untouched.
    assert json.loads((Path(first) / "config.json").read_text()) == {
        "auths": {"registry.example.edu": {"auth": lab}}
    }
    assert mode(Path(second)) == 0o700


def test_ecr_images_without_a_pull_secret_use_the_instance_roles_token_reused_for_hours(
    tmp_path: Path,
) -> None:
    ecr = FakeEcr()
    regions: list[str] = []
    now = [0.0]

    def client(region: str) -> FakeEcr:
        regions.append(region)
        return ecr

    pulls = PullCredentials(str(tmp_path / "d"), {}, ecr=client, clock=lambda: now[0])

    directory = pulls.config_dir(ECR_IMAGE)
    pulls.config_dir(ECR_IMAGE)
    now[0] = 12 * 3600.0
    pulls.config_dir(ECR_IMAGE)

    config = json.loads((Path(str(directory)) / "config.json").read_text())
    token = base64.b64encode(b"AWS:ecr-password").decode()
    assert config == {"auths": {"123456789012.dkr.ecr.us-east-1.amazonaws.com": {"auth": token}}}
    assert ecr.calls == [{"registryIds": ["123456789012"]}] * 2
    assert regions == ["us-east-1", "us-east-1"]


def test_a_pull_secret_for_an_ecr_registry_wins_over_the_instance_role(tmp_path: Path) -> None:
    ecr = FakeEcr()
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    pulls = PullCredentials(str(tmp_path / "d"), {host: {"auth": "given"}}, ecr=lambda r: ecr)

    assert pulls.credential(ECR_IMAGE) == {"auth": "given"}
    assert ecr.calls == []


def test_docker_pull_gets_the_config_directory_by_environment_never_on_its_command_line(
    tmp_path: Path,
) -> None:
    record = tmp_path / "record"
    fake_docker = tmp_path / "docker"
    fake_docker.write_text(f'#!/bin/sh\necho "$*|$DOCKER_CONFIG" > {record}\n')
    fake_docker.chmod(0o755)
    auth = base64.b64encode(b"robot:pw").decode()
    pulls = PullCredentials(str(tmp_path / "cfg"), {"registry.example.edu": {"auth": auth}})
    image = "registry.example.edu/lab/img:1"

    DockerCli("unix:///run/d.sock", binary=str(fake_docker)).pull(
        image, threading.Event(), pulls.config_dir(image)
    )

    argv, config_dir = record.read_text().strip().split("|")
    assert argv == f"-H unix:///run/d.sock pull --quiet {image}"
    assert config_dir == str(tmp_path / "cfg" / "registry.example.edu")
    assert auth not in argv
