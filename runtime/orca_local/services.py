"""Starting and stopping the loopback servers that stand in for AWS and Kubernetes.

``python -m orca_local.services up`` starts the local AWS (moto with ORCA's
extensions), the Kubernetes API emulator and a Docker daemon of its own, each
in the background on loopback, and writes ``<state>/services.env`` with what a
client needs to reach them (``AWS_ENDPOINT_URL``, ``KUBECONFIG``,
``DOCKER_HOST``). The emulator proxies ``kubectl logs`` to kubelets with the
API server's client certificate from a local CA in ``<state>/pki``
(:func:`kubelet_pki`), which also holds the serving certificate a runtime's
kubelet API uses; services.env leaves those out, so a runtime serves its
kubelet API only where it is given them (the demo does). ``down`` stops what
``up`` started. The Makefile brackets the tests and the demo with the two, so
nothing is left running.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orca_local.certificates import KubeletPki, create_kubelet_pki
from orca_local.docker_daemon import DockerDaemon
from orca_local.kube_api.server import write_kubeconfig

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
LOCAL_CREDENTIALS = {
    # moto accepts any credentials; fixed ones keep boto3 from looking further.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _start_background(name: str, module: str, state: Path, *extra: str) -> str:
    """Start ``python -m module`` detached; wait for the URL in its ready file."""
    ready = state / f"{name}.url"
    ready.unlink(missing_ok=True)
    log_file = (state / f"{name}.log").open("ab")
    command = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", "0"]
    command += ["--ready-file", str(ready), *extra]
    process = subprocess.Popen(
        command, stdout=log_file, stderr=log_file, start_new_session=True, cwd=state
    )
    (state / f"{name}.pid").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {state / name}.log")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} was not ready within {START_TIMEOUT:.0f} s")
        time.sleep(0.05)
    return ready.read_text().strip()


def _stop_background(name: str, state: Path) -> None:
    pidfile = state / f"{name}.pid"
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)
    (state / f"{name}.url").unlink(missing_ok=True)


def _spawn(name: str, command: list[str], state: Path, env: dict[str, str]) -> None:
    """Start a long-running stand-in detached, with its pid file and log."""
    log_file = (state / f"{name}.log").open("ab")
    process = subprocess.Popen(
        command,
        stdout=log_file,
        stderr=log_file,
        start_new_session=True,
        cwd=state,
        env={**os.environ, **env},
    )
    (state / f"{name}.pid").write_text(f"{process.pid}\n")


def up(
    state: Path, *, kube: bool = True, docker: bool = True, cluster_stand_ins: bool = False
) -> dict[str, str]:
    state.mkdir(parents=True, exist_ok=True)
    env = dict(LOCAL_CREDENTIALS)
    env["AWS_ENDPOINT_URL"] = _start_background("aws", "orca_local.aws", state)
    log.info("local AWS (moto) at %s", env["AWS_ENDPOINT_URL"])
    if kube:
        pki = create_kubelet_pki(state / "pki")
        url = _start_background("kube-api", "orca_local.kube_api", state, *pki.emulator_arguments())
        env["KUBECONFIG"] = str(write_kubeconfig(state / "kubeconfig", url))
        # Kept apart from services.env: a runtime started by hand sources it to serve
        # `kubectl logs`; the tests' runtimes run without a kubelet API unless they ask.
        kubelet = [f"export {k}={v}" for k, v in sorted(pki.runtime_environment().items())]
        (state / "kubelet.env").write_text("\n".join(kubelet) + "\n")
        log.info("Kubernetes API emulator at %s", url)
    if docker:
        env["DOCKER_HOST"] = DockerDaemon(state / "docker").start()
        log.info("Docker daemon at %s", env["DOCKER_HOST"])
    if cluster_stand_ins and kube and docker:
        # For trying ORCA by hand: the scheduler's stand-in, and EC2's instances.
        _spawn(
            "binder",
            [sys.executable, "-m", "orca_local.binder", "--kubeconfig", env["KUBECONFIG"]],
            state,
            env,
        )
        _spawn(
            "instances",
            [
                sys.executable,
                "-m",
                "orca_local.instances",
                "--endpoint-url",
                env["AWS_ENDPOINT_URL"],
                "--docker-host",
                env["DOCKER_HOST"],
                "--state-dir",
                str(state),
            ],
            state,
            env,
        )
        log.info("binder and instance emulator running; logs in %s", state)
    lines = [f"export {key}={value}" for key, value in sorted(env.items())]
    (state / "services.env").write_text("\n".join(lines) + "\n")
    return env


def kubelet_pki(state: Path) -> KubeletPki:
    """The certificates :func:`up` made for the emulator and the runtimes' kubelet APIs."""
    return KubeletPki.in_directory(state / "pki")


def down(state: Path) -> None:
    for name in ("instances", "binder", "kube-api", "aws"):
        _stop_background(name, state)
    DockerDaemon(state / "docker").stop()
    (state / "services.env").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orca_local.services", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=Path(".local"))
    parser.add_argument("--no-kube", action="store_true", help="a real cluster is used")
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument(
        "--cluster-stand-ins",
        action="store_true",
        help="also run the binder (scheduler) and the instance emulator, for trying ORCA by hand",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = args.state_dir.resolve()
    if args.action == "up":
        try:
            up(
                state,
                kube=not args.no_kube,
                docker=not args.no_docker,
                cluster_stand_ins=args.cluster_stand_ins,
            )
        except Exception as e:
            log.error("could not start the local services: %s", e)
            down(state)
            return 1
        return 0
    down(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
