#!/usr/bin/env python3
"""Run the SAM CLI (from .tools/venv) with its Lambda containers on the host network.

    .tools/venv/bin/python scripts/sam_hostnet.py local invoke IssueJwtFunction -e events/... [sam options]
    .tools/venv/bin/python scripts/sam_hostnet.py local start-api --port 3000 [sam options]

Why: the offline test engine (scripts/docker_engine.py) runs without a bridge network, so
that every connection stays on loopback. SAM 1.170 creates each function container on the
default bridge and reaches the emulator inside through a published port, even with
`--docker-network host` (aws-sam-cli#4236). This launcher wraps the Docker SDK's container
creation inside SAM, for SAM's Lambda containers only (entrypoint /var/rapid/aws-lambda-rie):

- `network_mode=host`, no published ports;
- the emulator listens on 127.0.0.1 at the very port SAM picked to publish (so SAM finds it
  where it looks), and its runtime API on another free loopback port (two warm containers
  of `start-api` must not share the default 9001);
- a label (`SAM_RUN_LABEL`, default `ably-authurl.sam`) so that a test can remove exactly the
  containers it caused.

It also makes SAM read the containers' logs reliably (see install()) and turns off SAM's weekly version check against PyPI. Everything else is the unchanged
`sam` command line. `--container-host 127.0.0.1` and
`--container-host-interface 127.0.0.1` are added to `sam local ...` when not given.
With a normal Docker (bridge network, internet) you do not need this: run `sam` directly.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

RIE = "/var/rapid/aws-lambda-rie"
RAPID_PORT = "8080"  # samcli.local.docker.container.Container.RAPID_PORT_CONTAINER
LOG_WAIT_S = 15.0


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_network_kwargs(kwargs: dict) -> dict:
    """Container-create arguments of one SAM Lambda container, moved to the host network."""
    entrypoint = kwargs.get("entrypoint")
    if not (isinstance(entrypoint, list) and entrypoint and entrypoint[0] == RIE):
        return kwargs  # not a Lambda container (e.g. a build container): unchanged
    ports = kwargs.pop("ports", None) or {}
    published = ports.get(RAPID_PORT) or ports.get(f"{RAPID_PORT}/tcp")
    if not published:
        raise SystemExit(f"sam_hostnet: SAM published no port for the emulator: {ports!r}")
    host_port = published[1] if isinstance(published, tuple) else published
    if len(ports) > 1:
        # Debug ports (sam local ... -d): on the host network they are the container's own.
        print(f"sam_hostnet: extra published ports are used as is on the host network: {ports}", file=sys.stderr)
    kwargs["network_mode"] = "host"
    kwargs["entrypoint"] = entrypoint + [
        "--runtime-interface-emulator-address", f"127.0.0.1:{host_port}",
        "--runtime-api-address", f"127.0.0.1:{free_loopback_port()}",
    ]
    label = os.environ.get("SAM_RUN_LABEL", "ably-authurl.sam")
    kwargs["labels"] = {**(kwargs.get("labels") or {}), label: "1"}
    return kwargs


def install() -> None:
    from docker.models.containers import ContainerCollection

    original = ContainerCollection.create

    def create(self, image, command=None, **kwargs):
        return original(self, image, command, **host_network_kwargs(kwargs))

    ContainerCollection.create = create

    # SAM reads a container's output with `attach(logs=True)`, which on this engine often
    # misses what the function printed before the attach (its init line, even the request
    # line): read it with `logs(follow=True)` instead, which replays the container's log from
    # its start. SAM sends both streams to stderr anyway; the answer goes to stdout as before.
    import threading

    from samcli.local.docker.container import Container

    def wait_for_logs(self, stdout=None, stderr=None, event=None):
        out = stderr or stdout
        if not out:
            return
        real_container = self.docker_client.containers.get(self.id)
        chunks = real_container.logs(stream=True, follow=True, stdout=True, stderr=True)
        Container._write_container_output(((chunk, None) for chunk in chunks), stdout=out, event=event)

    Container.wait_for_logs = wait_for_logs

    # After the answer SAM waits 1 s for the REPORT line, then prints the answer and removes
    # the container: on a busy machine the last log lines come later. Wait up to LOG_WAIT_S
    # (the wait ends as soon as the line is there).
    class PatientEvent(threading.Event):
        def wait(self, timeout=None):
            return super().wait(None if timeout is None else max(timeout, LOG_WAIT_S))

    Container._create_threading_event = staticmethod(PatientEvent)

    # SAM asks PyPI for a newer version once a week: nothing here leaves the machine.
    import samcli.lib.utils.version_checker as version_checker

    version_checker._inform_newer_version = lambda *args, **kwargs: None


def with_loopback_defaults(argv: list[str]) -> list[str]:
    if len(argv) < 2 or argv[0] != "local":
        return argv
    out = list(argv)
    for flag in ("--container-host", "--container-host-interface"):
        if flag not in out and not any(a.startswith(flag + "=") for a in out):
            out += [flag, "127.0.0.1"]
    return out


def main() -> int:
    # Ctrl-C (SIGINT) is how SAM is told to stop and remove its containers: make sure it is
    # not ignored, as it is for a process started in the background by a non-interactive shell.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install()
    from samcli.cli.main import cli

    sys.argv = ["sam"] + with_loopback_defaults(sys.argv[1:])
    return cli()  # click: exits itself


if __name__ == "__main__":
    sys.exit(main())
