"""The agent's entry: ``run_agent(config, host)`` runs the instance's one pod to its end.

Started by the bootstrap in user data (``orca agent --config /etc/orca/agent.json``,
or ``python -m orca.agent --config FILE``), the agent fetches the pod's bundle,
runs the pod (:class:`~orca.agent.pod.PodRun`), reports every change to the
status queue, and when the pod is over sends the final report, removes the
containers and volumes, and powers the instance off, which terminates it.

Four things end a pod early, each stopping the containers gracefully and
reporting the pod ``Failed`` with a reason:

- the instance's deadline (``config.deadline``, the pod's max-lifetime):
  ``DeadlineExceeded``;
- a spot interruption notice (polled every 5 s on spot instances only):
  ``SpotInterrupted``, with the notice's time; the containers get the pod's
  ``terminationGracePeriodSeconds`` but no more than leaves time to report and
  power off before EC2 reclaims the instance;
- the runtime silent longer than its lease (the dead-man switch, reading the
  runtime's heartbeat about once a minute): ``RuntimeSilent``;
- SIGTERM to the agent (the machine is shutting down): ``Terminated``, as the
  kubelet's graceful node shutdown does; the agent then leaves powering off to
  whoever is shutting the machine down.

The spot and heartbeat checks run in :class:`~orca.agent.watch.Watch`.

The agent logs to stderr (journald on the instance); it never logs environment
values, which may hold Secrets.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType

from orca.agent.containers import RuntimeOptions
from orca.agent.docker import DockerCli
from orca.agent.host import Host, host_from_environment
from orca.agent.pod import PodRun
from orca.agent.reporter import StatusReporter
from orca.agent.status import TERMINAL_PHASES, Snapshot
from orca.agent.supervisor import Tuning
from orca.agent.watch import DeadManSwitch, Ending, SpotWatch, Watch, WatchTimings, stop_grace
from orca.aws.bundles import INSTANCE_BUNDLE_PATTERN, BundleStore
from orca.aws.clients import AwsClients
from orca.aws.errors import AuthError, AwsError, NotFoundError
from orca.aws.heartbeats import HeartbeatStore
from orca.aws.logs import ContainerLogs
from orca.aws.queue import StatusQueue
from orca.bootstrap import AgentConfig
from orca.bundle import PodBundle
from orca.heartbeat import read_interval

log = logging.getLogger(__name__)

# Waiting a few seconds is normal; waiting longer is worth a WARNING.
_BUNDLE_QUIET_ATTEMPTS = 4
_REPORT_FLUSH_SECONDS = 120.0
# What a power-off takes once the agent calls it, kept free before a spot notice's time.
_POWEROFF_SECONDS = 5.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Stop:
    """Why the agent is ending the pod early, set from a signal handler or the watch."""

    requested: threading.Event
    signal_name: str | None = None
    ending: Ending | None = None

    def end(self, ending: Ending) -> None:
        self.ending = ending
        self.requested.set()


def run_agent(
    config: AgentConfig,
    host: Host,
    *,
    clients: AwsClients | None = None,
    docker: DockerCli | None = None,
    options: RuntimeOptions | None = None,
    tuning: Tuning | None = None,
    timings: WatchTimings | None = None,
    clock: Callable[[], datetime] = _utcnow,
    handle_signals: bool = True,
) -> str:
    """Runs the pod of ``config`` on ``host`` to its end; returns the final phase."""
    clients = clients or AwsClients(config.region)
    docker = docker or DockerCli(os.environ.get("DOCKER_HOST"))
    if options is None:
        options = emulated_options() if host.emulated else RuntimeOptions()
    tuning = tuning or Tuning()
    timings = timings or WatchTimings()
    started = clock()
    instance_id = host.instance_id()
    log.info("agent on %s for pod %s (uid %s)", instance_id, config.pod, config.pod_uid)

    reporter = StatusReporter(
        StatusQueue(clients.sqs, config.status_queue_url),
        pod_uid=config.pod_uid,
        instance_id=instance_id,
        private_ip=host.private_ip(),
        clock=clock,
    )
    stop = _Stop(threading.Event())
    if handle_signals and threading.current_thread() is threading.main_thread():
        _install_signal_handlers(stop)

    watch = _watch(config, host, instance_id, clients, timings, clock, started, stop)
    phase = "Failed"
    try:
        watch.start()
        phase = _run_pod(
            config, host, docker, clients, reporter, options, tuning, timings, clock, stop
        )
    finally:
        watch.stop()
        flush_for = _flush_seconds(stop.ending, clock())
        if not reporter.flush(flush_for):
            log.error("the final status report was not delivered in %.0fs", flush_for)
        reporter.close()
        # On SIGTERM the machine is already going down (or an operator stopped the agent).
        if stop.signal_name is None:
            why = f" ({stop.ending.reason})" if stop.ending else ""
            host.shutdown(f"pod {config.pod} ended {phase}{why}")
    return phase


def _watch(
    config: AgentConfig,
    host: Host,
    instance_id: str,
    clients: AwsClients,
    timings: WatchTimings,
    clock: Callable[[], datetime],
    started: datetime,
    stop: _Stop,
) -> Watch:
    """The safety nets this instance needs: spot notices on spot, the dead-man switch
    when the runtime gave a lease."""
    checks = []
    if config.spot:
        checks.append((timings.spot_poll, SpotWatch(host, instance_id).check))
    lease = config.runtime_lease
    if lease is not None and config.heartbeat_url is not None:
        store = HeartbeatStore.at(clients.s3, config.heartbeat_url)
        read_every = timings.heartbeat_read or read_interval(lease).total_seconds()
        checks.append((read_every, DeadManSwitch(store, lease, started).check))
        log.info(
            "dead-man switch: the pod stops if %s is older than %.0f s (read every %.0f s)",
            store.url,
            lease.total_seconds(),
            read_every,
        )
    return Watch(checks, clock=clock, on_ending=stop.end)


def _flush_seconds(ending: Ending | None, now: datetime) -> float:
    """How long the final report may take: before the power-off a spot notice allows."""
    if ending is None or ending.finish_by is None:
        return _REPORT_FLUSH_SECONDS
    left = (ending.finish_by - now).total_seconds() - _POWEROFF_SECONDS
    return max(1.0, min(_REPORT_FLUSH_SECONDS, left))


def emulated_options() -> RuntimeOptions:
    """The local instance emulator's hosts: no GPU, no registry, rlimits that cannot be
    raised, and fewer CPUs than the instance types they stand for."""
    return RuntimeOptions(ulimits=(), gpus=False, registry=False, host_cpus=os.cpu_count())


def _run_pod(
    config: AgentConfig,
    host: Host,
    docker: DockerCli,
    clients: AwsClients,
    reporter: StatusReporter,
    options: RuntimeOptions,
    tuning: Tuning,
    timings: WatchTimings,
    clock: Callable[[], datetime],
    stop: _Stop,
) -> str:
    instance_arn = host.instance_arn()
    wait = timedelta(seconds=timings.bundle_wait)
    bundle = _fetch_bundle(config, instance_arn, clients, stop, clock, wait)
    if bundle is None:
        reason = "BundleUnavailable"
        message = (
            f"the pod's bundle for {instance_arn} could not be read from "
            f"{config.bundle_bucket} in {wait.total_seconds():.0f} s; if the agent's log "
            "shows AccessDenied, check that the instance role may read "
            f"{INSTANCE_BUNDLE_PATTERN} and the stack's KMS key"
        )
        if stop.ending is not None:
            reason, message = stop.ending.reason, stop.ending.message
        reporter.publish(Snapshot("Failed", reason, message, [], []))
        return "Failed"

    run = PodRun(
        bundle,
        docker=docker,
        logs=ContainerLogs(clients.logs, config.log_group),
        publish=reporter.publish,
        options=options,
        tuning=tuning,
    )
    run.start()
    stopped = False
    while not run.finished.wait(0.25):
        if stopped:
            continue
        if stop.requested.is_set() and stop.ending is not None:
            ending = stop.ending
            grace = stop_grace(run.grace_seconds, clock(), ending.finish_by, timings.spot_reserve)
            log.warning("%s: %s; containers get %d s to stop", ending.reason, ending.message, grace)
            run.stop(ending.reason, ending.message, grace_seconds=grace)
            stopped = True
        elif stop.requested.is_set():
            run.stop("Terminated", "Pod was terminated in response to imminent node shutdown.")
            stopped = True
        elif clock() >= config.deadline:
            run.stop(
                "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
            )
            stopped = True
    run.cleanup()
    phase = run.phase()
    log.info("pod %s ended %s", config.pod, phase)
    return phase if phase in TERMINAL_PHASES else "Failed"


def _fetch_bundle(
    config: AgentConfig,
    instance_arn: str,
    clients: AwsClients,
    stop: _Stop,
    clock: Callable[[], datetime],
    wait: timedelta,
) -> PodBundle | None:
    """The pod's bundle, waited for: the runtime stores it only once RunInstances answered."""
    store = BundleStore(clients.s3, config.bundle_bucket)
    url = store.url(config.pod_uid, instance_arn)
    give_up = min(clock() + wait, config.deadline)
    delay = 1.0
    attempt = 0
    while True:
        attempt += 1
        try:
            bundle = store.get(config.pod_uid, instance_arn)
        except (NotFoundError, AuthError) as e:
            # A missing object reads as AccessDenied: the instance role may not list the bucket.
            problem = f"not there yet ({e.code})"
        except AwsError as e:
            problem = str(e)
        else:
            log.info("read the pod bundle %s (attempt %d)", url, attempt)
            return bundle
        if clock() + timedelta(seconds=delay) > give_up:
            log.error("gave up on the pod bundle %s after %d attempts: %s", url, attempt, problem)
            return None
        level = logging.INFO if attempt < _BUNDLE_QUIET_ATTEMPTS else logging.WARNING
        log.log(level, "pod bundle %s: %s; trying again in %.0fs", url, problem, delay)
        if stop.requested.wait(delay):
            return None
        delay = min(delay * 2, 30.0)


def _install_signal_handlers(stop: _Stop) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.signal_name = signal.Signals(signum).name
        stop.requested.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``orca agent --config FILE`` (also ``python -m orca.agent``)."""
    parser = argparse.ArgumentParser(
        prog="orca agent", description="Run this instance's pod and power off when it ends."
    )
    parser.add_argument("--config", required=True, help="the agent settings (JSON) from user data")
    parser.add_argument("--log-level", default=os.environ.get("ORCA_AGENT_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.Formatter.converter = time.gmtime
    with open(args.config) as handle:
        config = AgentConfig.model_validate_json(handle.read())
    phase = run_agent(config, host_from_environment())
    return 0 if phase in TERMINAL_PHASES else 1
