"""The ORCA agent: what runs on each burst instance and runs its one pod.

The bootstrap in user data starts it (``orca agent --config FILE``). It reads
the pod's bundle, runs the containers with the Docker the AMI ships, ships their
output to CloudWatch Logs, reports the pod's status to the department's queue,
and powers the instance off when the pod ends, its deadline passes, EC2 gives
notice that it reclaims the spot instance, or the runtime has been silent too
long.

Modules, from the top: :mod:`~orca.agent.main` (the entry, deadline and
signals), :mod:`~orca.agent.watch` (spot notices and the dead-man switch),
:mod:`~orca.agent.pod` (init containers, then containers),
:mod:`~orca.agent.supervisor` (one container's life and restarts),
:mod:`~orca.agent.status` and :mod:`~orca.agent.reporter` (phase and reports),
:mod:`~orca.agent.logship` (logs), :mod:`~orca.agent.containers` (the Docker
arguments, pure) and :mod:`~orca.agent.docker` (running the CLI),
:mod:`~orca.agent.host` (IMDS and power-off).
"""

from orca.agent.host import Ec2Host, EmulatedHost, Host, host_from_environment
from orca.agent.main import cli_main, run_agent

__all__ = ["Ec2Host", "EmulatedHost", "Host", "cli_main", "host_from_environment", "run_agent"]
