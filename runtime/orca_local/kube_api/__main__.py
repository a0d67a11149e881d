"""``python -m orca_local.kube_api``: run the emulator until SIGTERM or SIGINT.

Prints the URL it listens on (and writes it to ``--ready-file``) once it accepts requests,
so a script can wait for the file and then point ``kubectl`` at the URL.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .logs import KubeletTLS
from .server import KubeApiServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orca_local.kube_api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, help="write the URL here once ready")
    parser.add_argument("--kubelet-client-cert", help="client certificate shown to kubelets")
    parser.add_argument("--kubelet-client-key", help="key of --kubelet-client-cert")
    parser.add_argument("--kubelet-ca", help="CA that signs kubelet serving certificates")
    parser.add_argument("--watch-window", type=int, default=1000)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    tls = KubeletTLS(args.kubelet_client_cert, args.kubelet_client_key, args.kubelet_ca)
    server = KubeApiServer(args.host, args.port, kubelet_tls=tls, watch_window=args.watch_window)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    server.start()
    # The URL on stdout is this command's interface, read by scripts that start it.
    sys.stdout.write(server.url + "\n")
    sys.stdout.flush()
    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(server.url + "\n")
        tmp.replace(args.ready_file)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
