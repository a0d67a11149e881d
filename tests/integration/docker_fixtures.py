"""Fixtures for tests that run containers for real with a Docker daemon of their own.

A test module uses them with ``pytest_plugins = ["tests.integration.docker_fixtures"]``.

- ``docker_host``: the ``DOCKER_HOST`` of a daemon for this test session. When the
  environment names one that answers, it is reused; otherwise Debian's ``dockerd``
  is started as root under a temporary state directory and stopped after the
  session. The local images (:mod:`orca_local.images`) are ensured in it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orca_local.docker_daemon import DOCKERD, DockerDaemon, answers
from orca_local.images import ensure_images


@pytest.fixture(scope="session")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("DOCKER_HOST")
    if given and answers(given):
        ensure_images(given)
        yield given
        return
    if os.geteuid() != 0 or not Path(DOCKERD).exists():
        pytest.skip(f"needs root and {DOCKERD} (Debian's docker.io) to run containers")
    daemon = DockerDaemon(tmp_path_factory.mktemp("dockerd"))
    host = daemon.start()
    try:
        ensure_images(host)
        yield host
    finally:
        daemon.stop()
