#!/usr/bin/env python3
"""Invoke a function's release binary under AWS's Lambda runtime interface emulator, no Docker.

`make invoke FN=issue-jwt EVENT=events/jwt-get-valid-caller.json` runs this. It does what
`sam local invoke` does inside its container, on loopback: the emulator (`aws-lambda-rie`,
shipped inside the aws-sam-cli wheel in .tools/venv) starts the binary as `bootstrap` with
AWS_LAMBDA_RUNTIME_API pointing at itself, the event is POSTed to

    http://127.0.0.1:<port>/2015-03-31/functions/function/invocations

and the function's answer (the API Gateway proxy response) is printed: the raw JSON, then the
HTTP status, headers and the decoded body. The function's logs go to stderr.

Settings come from env.json (the file `sam local invoke --env-vars env.json` reads: its
"Parameters" section, then the section named after the function's logical id), plus --set
overrides. Nothing is inherited from your shell except PATH.

    scripts/invoke.py issue-jwt events/jwt-get-valid-caller.json [events/more.json ...]
    scripts/invoke.py issue-jwt events/jwt-expired-caller.json --set RUST_LOG=debug
    scripts/invoke.py issue-jwt - < my-event.json
"""

from __future__ import annotations

import argparse
import base64
import glob
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVOKE_PATH = "/2015-03-31/functions/function/invocations"

# Function (binary / package name) -> logical id in template.yaml.
LOGICAL_IDS = {
    "issue-jwt": "IssueJwtFunction",
    "issue-token-request": "IssueTokenRequestFunction",
    "issue-ably-token": "IssueAblyTokenFunction",
    "revoke-tokens": "RevokeTokensFunction",
}


def find_rie() -> Path:
    """The emulator binary for this machine, from the aws-sam-cli wheel in .tools/venv."""
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    if arch is None:
        raise SystemExit(f"no aws-lambda-rie for machine type {platform.machine()!r}")
    pattern = str(ROOT / ".tools" / "venv" / "lib" / "python*" / "site-packages" / "samcli" / "local" / "rapid"
                  / f"aws-lambda-rie-{arch}")
    found = sorted(glob.glob(pattern))
    if not found:
        raise SystemExit("aws-lambda-rie not found in .tools/venv (it ships inside aws-sam-cli): run `make tools`")
    return Path(found[-1])


def function_env(function: str, env_json: Path, overrides: list[str]) -> dict[str, str]:
    """env.json's Parameters, then the function's own section, then KEY=VALUE overrides."""
    doc = json.loads(env_json.read_text(encoding="utf-8"))
    env: dict[str, str] = {}
    for section in ("Parameters", LOGICAL_IDS.get(function, function)):
        for k, v in (doc.get(section) or {}).items():
            env[k] = str(v)
    for item in overrides:
        if "=" not in item:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        env[k] = v
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """One emulator process (one warm "container") running one binary."""

    def __init__(self, binary: Path, function: str, env: dict[str, str]):
        self.task_dir = Path(tempfile.mkdtemp(prefix=f"rie-{function}-"))
        # The binary runs as `bootstrap` from its task directory, as Lambda runs it from /var/task.
        os.symlink(binary.resolve(), self.task_dir / "bootstrap")
        self.port = free_port()
        self.log_path = self.task_dir / "emulator.log"
        self.log = open(self.log_path, "wb")
        child_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": "5",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LAMBDA_TASK_ROOT": str(self.task_dir),
        }
        child_env.update(env)
        cmd = [str(find_rie()),
               "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
               "--runtime-api-address", f"127.0.0.1:{free_port()}",
               str(self.task_dir / "bootstrap")]
        self.proc = subprocess.Popen(cmd, cwd=self.task_dir, env=child_env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_listening()

    def _wait_listening(self) -> None:
        for _ in range(200):  # bounded: 200 tries, 25 ms apart
            if self.proc.poll() is not None:
                raise SystemExit(f"aws-lambda-rie exited at start:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.025)
        raise SystemExit(f"aws-lambda-rie is not listening on 127.0.0.1:{self.port}:\n{self.logs()}")

    def invoke(self, event: bytes) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{INVOKE_PATH}", data=event, method="POST",
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                payload = res.read()
        except urllib.error.HTTPError as e:
            payload = e.read()
        if not payload.strip():
            return {}
        try:
            return json.loads(payload)
        except json.JSONDecodeError:
            return {"emulator answered (not JSON)": payload[:2000].decode("utf-8", errors="replace")}

    def logs(self) -> str:
        self.log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.task_dir, ignore_errors=True)


def decoded_body(response: dict) -> str:
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8", errors="replace")
    return body


def show(response: dict) -> bool:
    """Print one answer; False when the function gave none (it failed: see its logs)."""
    if not response:
        print("no answer: the function failed (an init or runtime error; see its logs)")
        return False
    print(json.dumps(response, indent=2))
    if "statusCode" not in response:
        return False
    print(f"\n--- HTTP {response['statusCode']}")
    for k, v in (response.get("headers") or {}).items():
        print(f"{k}: {v}")
    body = decoded_body(response)
    print()
    try:
        print(json.dumps(json.loads(body), indent=2))
    except (json.JSONDecodeError, ValueError):
        print(body)
    ctype = (response.get("headers") or {}).get("content-type", "")
    if ctype == "application/jwt" and body.count(".") == 2:
        header, claims, _ = body.split(".")
        pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
        print("\n--- JWT header and claims (decoded, not verified)")
        print(json.dumps(json.loads(base64.urlsafe_b64decode(pad(header))), indent=2))
        print(json.dumps(json.loads(base64.urlsafe_b64decode(pad(claims))), indent=2))
    return True


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("function", help="function (binary) name: " + ", ".join(LOGICAL_IDS))
    p.add_argument("events", nargs="+", help="event JSON files, invoked in order in one warm emulator; - for stdin")
    p.add_argument("--binary", help="the binary to run (default: target/release/FUNCTION)")
    p.add_argument("--env-json", default=str(ROOT / "env.json"), help="settings file (default: env.json)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    p.add_argument("--quiet-logs", action="store_true", help="do not print the function's logs")
    args = p.parse_args(argv)

    binary = Path(args.binary) if args.binary else ROOT / "target" / "release" / args.function
    if not binary.is_file():
        raise SystemExit(f"{binary} not found: run `make release` first (or pass --binary)")
    events = [sys.stdin.buffer.read() if e == "-" else Path(e).read_bytes() for e in args.events]
    env = function_env(args.function, Path(args.env_json), args.set)

    emulator = Emulator(binary, args.function, env)
    answered = True
    try:
        for name, event in zip(args.events, events):
            if len(events) > 1:
                print(f"\n===== {name}")
            answered = show(emulator.invoke(event)) and answered
    finally:
        logs = emulator.logs()
        emulator.stop()
        if not args.quiet_logs:
            print("\n--- function and emulator logs", file=sys.stderr)
            print(logs, file=sys.stderr, end="")
    return 0 if answered else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
