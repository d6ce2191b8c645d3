"""Helpers for measuring the release binaries under the Lambda runtime interface emulator.

Used by scripts/coldstart.py (`make coldstart`) and scripts/soak.py (`make soak`); the emulator
itself is driven by scripts/invoke.py's `Emulator` (issue 6), reused as is. Standard library only.

- `bootstrap_pid`: the function process the emulator started (a child of `aws-lambda-rie`).
- `proc_status`: VmRSS / VmHWM (peak RSS) of a process, in KiB, from /proc/<pid>/status.
- `emulator_timings`: what the emulator itself measured, from its log: `INIT REPORT(durationMs)`
  (from starting the bootstrap process to its first `GET /runtime/invocation/next`: what
  Lambda reports as "Init Duration") and each `INVOKE RTDONE(... duration)` (from handing the
  event to the runtime until its response was posted).
- `FakeAbly`: a loopback stand-in for Ably's REST API (requestToken, revokeTokens, time), so
  `issue-ably-token` and `revoke-tokens` answer 200 without the network.
- `zip_size`: the deployment package as Lambda gets it (`bootstrap` at the root, deflated).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import statistics
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVOKE_PATH = "/2015-03-31/functions/function/invocations"

# Function -> (event for a successful request, does it call Ably).
EVENTS = {
    "issue-jwt": ("events/jwt-get-valid-caller.json", False),
    "issue-token-request": ("events/token-request-get-valid-caller.json", False),
    "issue-ably-token": ("events/ably-token-get-valid-caller.json", True),
    "revoke-tokens": ("events/revoke-admin.json", True),
}


def bootstrap_pid(emulator_pid: int, timeout: float = 2.0) -> int | None:
    """The pid of the emulator's child process (the function's `bootstrap`)."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            fields = stat[stat.rfind(")") + 2:].split()
            if len(fields) > 1 and int(fields[1]) == emulator_pid:
                return int(entry)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... in KiB."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.startswith("Vm") or key.startswith("Rss"):
                parts = value.split()
                if parts and parts[0].isdigit():
                    out[key] = int(parts[0])
    except OSError:
        pass
    return out


INIT_RE = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")
INVOKE_RE = re.compile(r"INVOKE RTDONE\(status: (\w+), produced bytes: \d+, duration: ([0-9.]+)ms\)")


def emulator_timings(log: str) -> tuple[float | None, list[float]]:
    """(init duration ms, [invoke durations ms]) from the emulator's log."""
    init = INIT_RE.search(log)
    invokes = [float(m.group(2)) for m in INVOKE_RE.finditer(log)]
    return (float(init.group(1)) if init else None), invokes


def wait_for_log(emulator, pattern: re.Pattern, count: int = 1, timeout: float = 2.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = emulator.logs()
        if len(pattern.findall(log)) >= count or time.monotonic() > deadline:
            return log
        time.sleep(0.005)


class Invoker:
    """POSTs events to one emulator over one keep-alive connection."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def invoke(self, event: bytes) -> dict:
        self.conn.request("POST", INVOKE_PATH, body=event, headers={"content-type": "application/json"})
        res = self.conn.getresponse()
        return json.loads(res.read())

    def close(self) -> None:
        self.conn.close()


class _AblyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Answer in one segment, at once: with Nagle on, a second small write waits for the
        # client's delayed ACK (40 ms), which would be measured as "Ably's" latency.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, doc) -> None:
        body = json.dumps(doc).encode()
        head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode()
        self.wfile.write(head + body)
        self.wfile.flush()

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/time"):
            self._answer(200, [int(time.time() * 1000)])
        else:
            self._answer(404, {"error": {"code": 40400, "statusCode": 404, "message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.endswith("/requestToken"):
            issued = int(body.get("timestamp") or time.time() * 1000)
            doc = {"token": "fake.ably-token-for-measurements", "keyName": body.get("keyName", ""),
                   "issued": issued, "expires": issued + int(body.get("ttl") or 3_600_000),
                   "capability": body.get("capability", "")}
            if body.get("clientId"):
                doc["clientId"] = body["clientId"]
            self._answer(200, doc)
        elif self.path.endswith("/revokeTokens"):
            now = int(time.time() * 1000)
            results = [{"target": t, "issuedBefore": now, "appliesAt": now} for t in body.get("targets", [])]
            self._answer(200, {"successCount": len(results), "failureCount": 0, "results": results})
        else:
            self._answer(404, {"error": {"code": 40400, "statusCode": 404, "message": "not found"}})


class FakeAbly:
    """Ably's REST API on 127.0.0.1 (plain HTTP; the functions allow http only to loopback)."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _AblyHandler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def zip_size(binary: Path, work: Path) -> int:
    """Size of the Lambda deployment zip: the binary as `bootstrap`, deflated (mode 0755)."""
    path = work / f"{binary.name}.zip"
    info = zipfile.ZipInfo("bootstrap", date_time=(2024, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(info, binary.read_bytes())  # zlib default level, as `python3 -m zipfile -c`
    return path.stat().st_size


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
