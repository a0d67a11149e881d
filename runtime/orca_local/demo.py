"""``make demo``: the main job end to end on the embedded stand-ins.

It starts the local AWS (moto with ORCA's extensions), the Kubernetes API
emulator and a Docker daemon on loopback; builds the department's envelope in
the local AWS; starts the real runtime (``orca run``, a separate process
configured only through ``ORCA_*`` variables, as in a cluster), the binder
(the scheduler's stand-in) and the instance emulator (which runs the real
agent, and the pods' containers under Docker, for each instance the runtime
starts); applies the pods in ``examples/`` with kubectl; follows them to the
end; prints each pod's outcome, its instance's final state and its log (read
with ``kubectl logs``, which the emulator proxies to the runtime's kubelet API,
which reads CloudWatch Logs); deletes the pods; prints what each pod cost and what
is left of the month's budget, from the runtime's cost ledger; and stops everything. It exits
non-zero if any pod did not end as expected or any instance was left running.

With ``--kubeconfig`` the pods go to that cluster and its scheduler instead of
the emulator; AWS and the instances are still emulated, and the node, pods and
namespaces the demo created there are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from rich.console import Console
from rich.live import Live
from rich.table import Table

from orca import tags
from orca.aws.clients import AwsClients
from orca.aws.ec2 import Ec2, instance_from_api
from orca.aws.logs import ContainerLogs, stream_name
from orca.catalog import Catalog
from orca.kube.client import api_client
from orca.ledger import Ledger
from orca.ledger_records import HoldState, cents, cost_words
from orca_local import services
from orca_local.aws import LocalAwsControl
from orca_local.binder import Binder
from orca_local.certificates import KubeletPki, create_kubelet_pki
from orca_local.envelope import Envelope, create_envelope
from orca_local.instances import InstanceEmulator

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DEPARTMENT = "physics"
CLUSTER = "campus"
REGION = "us-east-1"
TIMEOUT_SECONDS = 240.0
# The example spot pod's type and the discount the emulated spot market gives it.
DEMO_SPOT_DISCOUNTS = {"p5.48xlarge": Decimal("0.6")}
KUBECTL = Path(sys.executable).parent / "kubectl"


@dataclass(frozen=True)
class Expected:
    phase: str
    exit_code: int
    log_line: str | None = None


# What a user expects of each example (the stand-in trainer in the local images
# finishes its three epochs and exits 0).
EXPECTED = {
    "default/gpu-training-job": Expected("Succeeded", 0),
    "biology/genome-align-chunk-17": Expected(
        "Succeeded", 0, "3c1ba78ba93fdf61cb80b6dcb321c92ef633f263dc5e01bea4472e43045472bc  -"
    ),
    "default/qc-check": Expected("Failed", 3, "qc: 3 samples below threshold"),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def runtime_environment(
    envelope: Envelope, kubeconfig: Path, base: dict[str, str], pki: KubeletPki
) -> dict[str, str]:
    """The ``ORCA_*`` settings for the department's runtime, from its envelope."""
    return {
        **os.environ,
        **base,
        **pki.runtime_environment(),
        **envelope.settings_environment(),
        "ORCA_KUBELET_PORT": str(free_port()),
        "ORCA_COST_CENTER": "phys-4410",
        "ORCA_KUBECONFIG": str(kubeconfig),
        "ORCA_ALLOWED_INSTANCE_TYPES": json.dumps(["p5.*", "p6-b200.*", "g6e.*", "c7i.*", "m7i.*"]),
        "ORCA_INSTANCE_RESYNC_SECONDS": "1",
        "ORCA_REPORT_POLL_SECONDS": "2",
    }


@contextmanager
def background(
    command: list[str], env: dict[str, str], log_file: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log_file.open("ab") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def kubectl(kubeconfig: Path, *args: str) -> str:
    result = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


class Demo:
    def __init__(self, state: Path, cluster_kubeconfig: Path | None, console: Console) -> None:
        self.state = state
        self.real_cluster = cluster_kubeconfig
        self.console = console
        self.created_namespaces: list[str] = []

    def run(self) -> int:
        self.state.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            env = self._start_services(stack)
            kubeconfig = self.real_cluster or Path(env["KUBECONFIG"])
            os.environ.update({k: v for k, v in env.items() if k != "KUBECONFIG"})
            aws = AwsClients(REGION, endpoint_url=env["AWS_ENDPOINT_URL"])
            envelope = create_envelope(aws, department=DEPARTMENT, cluster=CLUSTER, region=REGION)
            self.console.print(
                f"[bold]Envelope[/] for department {DEPARTMENT}: {len(envelope.subnet_ids)} "
                f"private subnets, launch templates {', '.join(sorted(envelope.launch_templates))}"
            )
            self._spot_market(env["AWS_ENDPOINT_URL"], envelope)
            kube = api_client(kubeconfig)
            core = client.CoreV1Api(kube)
            stack.callback(self._clean_cluster, core, kubeconfig)

            emulator = InstanceEmulator(
                aws.ec2,
                aws.s3,
                endpoint_url=env["AWS_ENDPOINT_URL"],
                region=REGION,
                docker_host=env["DOCKER_HOST"],
                state_dir=self.state / "instances",
            )
            stack.enter_context(emulator)
            runtime_env = runtime_environment(envelope, kubeconfig, env, self._kubelet_pki())
            stack.enter_context(
                background(
                    [sys.executable, "-m", "orca.cli", "run"],
                    runtime_env,
                    self.state / "runtime.log",
                )
            )
            self.console.print(f"[bold]Runtime[/] started; its log: {self.state / 'runtime.log'}")
            self._wait_for_node(core)
            if self.real_cluster is None:
                stack.enter_context(_running(Binder(kube)))

            pods = self._apply_examples(kubeconfig)
            outcome = self._follow(core, pods)
            report = self._report(kubeconfig, aws, envelope, pods, outcome)
            self._delete_pods(kubeconfig, core, pods)
            self._costs(aws, envelope, outcome)
            leaked = self._leaked_instances(aws)
            if leaked:
                self.console.print(f"[red]Instances still running: {', '.join(leaked)}[/]")
            ok = report and not leaked
            self.console.print(
                "[bold green]Demo passed[/]" if ok else "[bold red]Demo failed[/]: see above"
            )
            return 0 if ok else 1

    def _start_services(self, stack: ExitStack) -> dict[str, str]:
        self.console.print("[bold]Starting[/] the local AWS, Kubernetes API emulator and Docker")
        env = services.up(self.state / "services", kube=self.real_cluster is None)
        stack.callback(services.down, self.state / "services")
        return env

    def _spot_market(self, endpoint_url: str, envelope: Envelope) -> None:
        """Spot prices for the example spot pod's type in the envelope's zones.

        moto has no spot market; without prices a spot pod is billed at its on-demand
        ceiling. The demo sets the kind of discount spot often has, and says so.
        """
        catalog = Catalog.shipped()
        control = LocalAwsControl(endpoint_url)
        for instance_type, discount in DEMO_SPOT_DISCOUNTS.items():
            known = catalog.get(instance_type)
            on_demand = known.on_demand_usd_per_hour if known else None
            assert on_demand is not None, f"the shipped catalog prices {instance_type}"
            price = (on_demand * (1 - discount)).quantize(Decimal("0.0001"))
            for zone in sorted(set(envelope.subnet_zones.values())):
                control.set_spot_price(instance_type, zone, price)
            self.console.print(
                f"[bold]Spot market[/] (emulated): {instance_type} at ${price}/h in every zone, "
                f"{discount:.0%} below its on-demand ${on_demand}/h"
            )

    def _kubelet_pki(self) -> KubeletPki:
        """The emulator's kubelet PKI; for a real cluster, a local one (its CA is unknown)."""
        if self.real_cluster is None:
            return services.kubelet_pki(self.state / "services")
        return create_kubelet_pki(self.state / "pki", node_name=f"orca-{DEPARTMENT}")

    def _wait_for_node(self, core: client.CoreV1Api) -> None:
        node = f"orca-{DEPARTMENT}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                found = core.read_node(node)
                ready = next(c for c in found.status.conditions if c.type == "Ready")
                if ready.status == "True":
                    self.console.print(f"[bold]Node[/] {node} is Ready: {ready.message}")
                    return
            except (client.ApiException, StopIteration):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"node {node} did not become Ready; see {self.state / 'runtime.log'}")

    def _apply_examples(self, kubeconfig: Path) -> list[tuple[str, str]]:
        pods = []
        for path in sorted(EXAMPLES.glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text()):
                if document and document.get("kind") == "Pod":
                    namespace = document["metadata"].get("namespace", "default")
                    pods.append((namespace, document["metadata"]["name"]))
                    if namespace != "default" and namespace not in self.created_namespaces:
                        self._ensure_namespace(kubeconfig, namespace)
            kubectl(kubeconfig, "apply", "-f", str(path))
            self.console.print(f"[bold]Applied[/] examples/{path.name}")
        return pods

    def _ensure_namespace(self, kubeconfig: Path, namespace: str) -> None:
        existing = kubectl(kubeconfig, "get", "namespaces", "-o", "name")
        if f"namespace/{namespace}" not in existing.split():
            manifest = yaml.safe_dump(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
            subprocess.run(
                [str(KUBECTL), "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
                input=manifest,
                text=True,
                check=True,
                capture_output=True,
            )
            self.created_namespaces.append(namespace)

    def _follow(self, core: client.CoreV1Api, pods: list[tuple[str, str]]) -> dict[str, Any]:
        latest: dict[str, Any] = {}
        deadline = time.monotonic() + TIMEOUT_SECONDS
        with Live(console=self.console, refresh_per_second=4, transient=False) as live:
            while time.monotonic() < deadline:
                for namespace, name in pods:
                    latest[f"{namespace}/{name}"] = _read_pod(core, namespace, name)
                live.update(_progress_table(latest))
                if all(_phase(p) in ("Succeeded", "Failed") for p in latest.values()):
                    break
                time.sleep(0.5)
        self.console.print()
        return latest

    def _report(
        self,
        kubeconfig: Path,
        aws: AwsClients,
        envelope: Envelope,
        pods: list[tuple[str, str]],
        outcome: dict[str, Any],
    ) -> bool:
        ec2 = Ec2(aws.ec2)
        logs = ContainerLogs(aws.logs, envelope.log_group)
        table = Table(title="Outcome")
        for column in ("pod", "phase", "exit", "instance", "type", "instance state", "expected"):
            table.add_column(column)
        all_ok = True
        for key, pod in outcome.items():
            expected = EXPECTED.get(key)
            annotations = (pod or {}).get("metadata", {}).get("annotations") or {}
            instance_id = annotations.get(tags.INSTANCE_ID_ANNOTATION)
            instance = ec2.get_instances([instance_id])[0] if instance_id else None
            exit_code = _exit_code(pod)
            lines = self._pod_log(kubeconfig, logs, pod) if pod else []
            ok = (
                expected is not None
                and _phase(pod) == expected.phase
                and exit_code == expected.exit_code
                and instance is not None
                and instance.state in ("shutting-down", "terminated")
                and (expected.log_line is None or expected.log_line in lines)
            )
            all_ok &= ok
            table.add_row(
                key,
                _phase(pod) or "-",
                str(exit_code),
                instance_id or "-",
                instance.instance_type if instance else "-",
                instance.state if instance else "-",
                f"{expected.phase} (exit {expected.exit_code})" if expected else "?",
                style=None if ok else "red",
            )
            for line in lines:
                self.console.print(f"  [dim]{key} log:[/] {line}")
        self.console.print(table)
        return all_ok

    def _pod_log(self, kubeconfig: Path, logs: ContainerLogs, pod: dict[str, Any]) -> list[str]:
        """The pod's log lines as ``kubectl logs`` gives them, container by container."""
        meta = pod["metadata"]
        lines: list[str] = []
        for container in pod["spec"]["containers"]:
            # A real cluster's API server cannot reach the kubelet API on this machine's
            # loopback, so there the lines come from CloudWatch, where kubectl's would.
            if self.real_cluster is not None:
                lines += _log_lines(logs, pod, container["name"])
                continue
            try:
                text = kubectl(
                    kubeconfig,
                    "logs",
                    meta["name"],
                    "-n",
                    meta["namespace"],
                    "-c",
                    container["name"],
                )
            except RuntimeError as e:
                self.console.print(f"  [yellow]{e}[/]")
                continue
            lines += text.splitlines()
        return lines

    def _delete_pods(
        self, kubeconfig: Path, core: client.CoreV1Api, pods: list[tuple[str, str]]
    ) -> None:
        for namespace, name in pods:
            kubectl(
                kubeconfig, "delete", "pod", name, "-n", namespace, "--wait=true", "--timeout=60s"
            )
        self.console.print(f"[bold]Deleted[/] {len(pods)} pods")

    def _costs(self, aws: AwsClients, envelope: Envelope, outcome: dict[str, Any]) -> None:
        """What each pod cost and what is left of the budget, as the ledger has them."""
        ledger = Ledger.on(aws, envelope.ledger_table, cluster=CLUSTER, department=DEPARTMENT)
        uids = {key: pod["metadata"]["uid"] for key, pod in outcome.items() if pod is not None}
        # The runtime settles each pod once its instance is gone, a resync or two after.
        deadline = time.monotonic() + 30
        records = {key: ledger.find(uid) for key, uid in uids.items()}
        while time.monotonic() < deadline and any(
            r is not None and r.state is HoldState.HELD for r in records.values()
        ):
            time.sleep(0.5)
            records = {key: ledger.find(uid) for key, uid in uids.items()}

        table = Table(title="Cost", caption="EC2 bills per second, with a minimum of 60 s a run")
        for column in ("pod", "type", "market", "price/h", "ran", "cost", "ledger"):
            table.add_column(column)
        for key, record in records.items():
            if record is None:
                table.add_row(key, "-", "-", "-", "-", "-", "no record")
                continue
            rate = record.settled_usd_per_hour or record.usd_per_hour
            ran = "-"
            if record.launched_at and record.ended_at:
                ran = f"{(record.ended_at - record.launched_at).total_seconds():.0f} s"
            table.add_row(
                key,
                record.instance_type,
                record.market,
                f"${rate.normalize():f}",
                ran,
                cost_words(record.cost_usd) if record.cost_usd is not None else "-",
                record.state.value,
            )
        self.console.print(table)
        summary = ledger.month_summary()
        budget = Decimal(envelope.budget_usd)
        left = budget - summary.committed_usd
        self.console.print(
            f"[bold]Budget[/] of {DEPARTMENT} for {summary.month}: spent "
            f"{cents(summary.spent_usd)}, held {cents(summary.held_usd)}, "
            f"{cents(max(left, Decimal(0)))} left of {cents(budget)}"
        )

    def _leaked_instances(self, aws: AwsClients) -> list[str]:
        deadline = time.monotonic() + 30
        while True:
            found = aws.ec2.describe_instances(
                Filters=[{"Name": f"tag:{tags.DEPARTMENT}", "Values": [DEPARTMENT]}]
            )
            live = [
                instance_from_api(raw)
                for reservation in found["Reservations"]
                for raw in reservation["Instances"]
            ]
            running = [i.instance_id for i in live if i.live]
            if not running or time.monotonic() > deadline:
                return running
            time.sleep(0.5)

    def _clean_cluster(self, core: client.CoreV1Api, kubeconfig: Path) -> None:
        if self.real_cluster is None:
            return
        for namespace in self.created_namespaces:
            subprocess.run(
                [
                    str(KUBECTL),
                    "--kubeconfig",
                    str(kubeconfig),
                    "delete",
                    "namespace",
                    namespace,
                    "--wait=false",
                ],
                check=False,
                capture_output=True,
            )
        try:
            core.delete_node(f"orca-{DEPARTMENT}")
        except client.ApiException as e:
            log.warning("could not delete node orca-%s: %s", DEPARTMENT, e)


@contextmanager
def _running(binder: Binder) -> Iterator[Binder]:
    binder.start()
    try:
        yield binder
    finally:
        binder.stop()


def _read_pod(core: client.CoreV1Api, namespace: str, name: str) -> Any:
    try:
        return yaml.safe_load(
            core.read_namespaced_pod(name, namespace, _preload_content=False).data
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def _phase(pod: Any) -> str | None:
    return None if pod is None else (pod.get("status") or {}).get("phase")


def _exit_code(pod: Any) -> int | None:
    """The first non-zero exit code of the pod's containers, 0 if all exited 0, else None."""
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    codes = [(s.get("state") or {}).get("terminated", {}).get("exitCode") for s in statuses]
    if not codes or None in codes:
        return None
    return next((int(code) for code in codes if code != 0), 0)


def _waiting_or_state(pod: Any) -> str:
    if pod is None:
        return "-"
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        state = status.get("state") or {}
        if "waiting" in state:
            return str(state["waiting"].get("reason", "Waiting"))
        if "terminated" in state:
            return f"exit {state['terminated'].get('exitCode')}"
        if "running" in state:
            return "Running"
    return (pod.get("status") or {}).get("reason") or "-"


def _progress_table(latest: dict[str, Any]) -> Table:
    table = Table(title="Pods on orca-" + DEPARTMENT)
    for column in ("pod", "phase", "status", "instance"):
        table.add_column(column)
    for key, pod in latest.items():
        annotations = (pod or {}).get("metadata", {}).get("annotations") or {}
        table.add_row(
            key,
            _phase(pod) or "-",
            _waiting_or_state(pod),
            annotations.get(tags.INSTANCE_ID_ANNOTATION, "-"),
        )
    return table


def _log_lines(logs: ContainerLogs, pod: dict[str, Any], container: str) -> list[str]:
    """One container's lines read from CloudWatch Logs directly."""
    meta = pod["metadata"]
    stream = stream_name(meta["namespace"], meta["name"], meta["uid"], container)
    try:
        return [line.message for line in logs.read(stream)]
    except Exception as e:  # a pod that never ran has no stream
        log.debug("no logs in %s: %s", stream, e)
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orca_local.demo", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=Path(".local/demo"))
    parser.add_argument("--kubeconfig", type=Path, help="use this cluster instead of the emulator")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Wide enough for instance ids and types when the output is a file or CI log.
    console = Console(width=None if sys.stdout.isatty() else 132)
    try:
        return Demo(args.state_dir.resolve(), args.kubeconfig, console).run()
    except Exception as e:
        console.print(f"[bold red]Demo failed:[/] {e}")
        log.debug("demo failure", exc_info=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
