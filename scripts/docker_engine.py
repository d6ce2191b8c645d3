#!/usr/bin/env python3
"""A project-local Docker engine for the offline SAM tests (`make test-sam`, `make sam-local`).

    scripts/docker_engine.py start     # start dockerd (if not running); prints DOCKER_HOST=...
    scripts/docker_engine.py stop      # stop the dockerd this project started, by its PID
    scripts/docker_engine.py status    # running or not, and where
    scripts/docker_engine.py env       # DOCKER_HOST=unix://... (nothing else)

Debian's `docker.io` (make tools-docker) without systemd: `dockerd` runs in the background
with its data, socket, PID file and log under .tools/docker/ (git-ignored), so it shares
nothing with a system Docker. It runs **without a bridge network and without iptables**
(`--bridge=none --iptables=false`): containers get no network of their own, and the SAM
launcher (scripts/sam_hostnet.py) puts the Lambda containers on the host network, so every
connection stays on 127.0.0.1.

`start` is idempotent: a running engine of this project is reused (exit status 0, "already
running"). `stop` ends only the PID in .tools/docker/dockerd.pid (dockerd stops its own
containerd), waits for it, removes the PID file and the socket, and unmounts what dockerd
left mounted under its exec root (its netns file).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".tools" / "docker"
PIDFILE = STATE / "dockerd.pid"
LOG = STATE / "dockerd.log"
# A unix socket path has at most 107 bytes; containerd's socket lives under the exec root.
SOCKET_LIMIT = 100
START_BOUND_S = 90  # how long start waits for the engine to answer (a bound, not a measurement)
STOP_BOUND_S = 30


def socket_path() -> Path:
    sock = STATE / "docker.sock"
    return sock if len(str(sock)) < SOCKET_LIMIT else short_dir() / "docker.sock"


def exec_root() -> Path:
    root = STATE / "exec"
    if len(str(root / "containerd" / "containerd.sock")) < SOCKET_LIMIT:
        return root
    return short_dir() / "exec"


def short_dir() -> Path:
    """For a deep checkout: a short directory in /tmp, unique to this checkout."""
    digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    return Path("/tmp") / f"ably-authurl-docker-{digest}"


def docker_host() -> str:
    return f"unix://{socket_path()}"


def read_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    # Only a dockerd counts (a stale PID file may name a reused PID).
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    return pid if os.path.basename(exe).startswith("dockerd") else None


def answers() -> bool:
    """True when the engine at our socket answers the API's ping."""
    sock = socket_path()
    if not sock.exists():
        return False
    try:
        import docker  # the Docker SDK, installed with aws-sam-cli in .tools/venv

        client = docker.DockerClient(base_url=docker_host(), timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "not answering yet"
        return False


def start() -> int:
    pid = read_pid()
    if pid and answers():
        print(f"docker engine already running (pid {pid})", file=sys.stderr)
        print(f"DOCKER_HOST={docker_host()}")
        return 0
    dockerd = shutil.which("dockerd")
    if not dockerd:
        raise SystemExit("dockerd not found: run `make tools-docker` (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise SystemExit("dockerd needs root here (no rootless setup): run the SAM targets as root")
    STATE.mkdir(parents=True, exist_ok=True)
    socket_path().parent.mkdir(parents=True, exist_ok=True)
    exec_root().mkdir(parents=True, exist_ok=True)
    socket_path().unlink(missing_ok=True)
    cmd = [
        dockerd,
        "--data-root", str(STATE / "data"),
        "--exec-root", str(exec_root()),
        "--pidfile", str(PIDFILE),
        "--host", docker_host(),
        # No bridge, no NAT, no iptables rules: nothing for a container but the host's loopback.
        "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
        "--log-level", "warn",
    ]
    if os.environ.get("DOCKERD_STORAGE_DRIVER"):
        cmd += ["--storage-driver", os.environ["DOCKERD_STORAGE_DRIVER"]]
    log = open(LOG, "ab")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + START_BOUND_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = LOG.read_text(errors="replace")[-3000:]
            raise SystemExit(f"dockerd exited at start ({proc.returncode}); {LOG}:\n{tail}")
        if answers():
            print(f"docker engine started (pid {proc.pid}, data {STATE / 'data'})", file=sys.stderr)
            print(f"DOCKER_HOST={docker_host()}")
            return 0
        time.sleep(0.25)
    proc.terminate()
    raise SystemExit(f"dockerd did not answer within {START_BOUND_S} s; see {LOG}")


def stop() -> int:
    pid = read_pid()
    if not pid:
        print("docker engine not running", file=sys.stderr)
        PIDFILE.unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_BOUND_S
    while time.monotonic() < deadline and read_pid() == pid:
        time.sleep(0.2)
    if read_pid() == pid:
        print(f"dockerd (pid {pid}) did not stop in {STOP_BOUND_S} s: SIGKILL", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    PIDFILE.unlink(missing_ok=True)
    socket_path().unlink(missing_ok=True)
    unmount_leftovers()
    print(f"docker engine stopped (pid {pid})", file=sys.stderr)
    return 0


def mounted_under(directory: Path) -> list[str]:
    prefix = str(directory.resolve()) + "/"
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    return points


def unmount_leftovers() -> None:
    """dockerd leaves its network namespace file (<exec-root>/netns/default) mounted after it
    exits; unmount what is left under our exec root, so that the directory can be removed."""
    for _ in range(10):  # mounts can be stacked: a bounded number of passes
        points = mounted_under(exec_root())
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", point], capture_output=True)


def status() -> int:
    pid = read_pid()
    if pid and answers():
        print(f"running: pid {pid}, DOCKER_HOST={docker_host()}")
        return 0
    print("not running")
    return 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["start", "stop", "status", "env"])
    args = p.parse_args(argv)
    if args.action == "env":
        print(f"DOCKER_HOST={docker_host()}")
        return 0
    return {"start": start, "stop": stop, "status": status}[args.action]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
