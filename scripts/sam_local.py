#!/usr/bin/env python3
"""`make sam-local`: `sam build`, then `sam local start-api` with the development settings.

The functions run in Docker as SAM runs them, behind SAM's local HTTP API on 127.0.0.1. The
settings are env.json's (the dev key, caller secret and policy of `make dev`), except
CALLER_TRUST_AUTHORIZER, which the template sets from its ApiJwtAuthorizer condition as in
a deployment (SAM's local API runs no JWT authorizer). /auth/token and /auth/revoke answer
503 as under `make dev` (ABLY_REST_URL points at a closed loopback port).

Which Docker:
- `--engine system` (the default when a Docker daemon answers at DOCKER_HOST or
  /var/run/docker.sock): yours. SAM pulls the real base image
  public.ecr.aws/lambda/provided:al2023-<arch> (network access) and runs as usual.
- `--engine project` (the default otherwise): the offline setup of `make test-sam` - the
  project-local engine (scripts/docker_engine.py), the local stand-in for the base image
  (scripts/sam_standin_image.py; offline tests only) and scripts/sam_hostnet.py. The engine
  is stopped again when you stop this (Ctrl-C), if this started it.

    scripts/sam_local.py [--port 3000] [--engine auto|system|project] [--skip-build]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev import try_it  # noqa: E402
from dev_token import caller_token, dev_setting  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
LABEL = f"ably-authurl.sam-local.{os.getpid()}"
ROUTES = [("/auth/jwt", "IssueJwtFunction", "GET, POST, OPTIONS"),
          ("/auth/token-request", "IssueTokenRequestFunction", "GET, POST, OPTIONS"),
          ("/auth/token", "IssueAblyTokenFunction", "GET, POST, OPTIONS"),
          ("/auth/revoke", "RevokeTokensFunction", "POST")]


def system_docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001
        return False


def architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def banner(base: str, engine: str, env_file: Path) -> str:
    alice = caller_token("alice", "Alice", "acme", [], 3600, dev_setting("CALLER_HS256_SECRET"))
    bar = "=" * 78
    lines = [bar, f"  Ably authUrl functions under `sam local start-api` (Docker) on {base}", bar, ""]
    for path, logical_id, methods in ROUTES:
        lines.append(f"  {base}{path:<24} {logical_id} ({methods})")
    lines += ["", f"  Docker: {engine}", f"  DEVELOPMENT SETTINGS (env.json, as {env_file.name}) — for development only:",
              "  this key and this caller secret are public; never deploy them."]
    lines += try_it(base, alice)
    lines += ["", "  sam build again after changing the code (make sam-build ARCH=...); Ctrl-C stops.", bar]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--engine", choices=["auto", "system", "project"], default="auto")
    p.add_argument("--skip-build", action="store_true")
    args = p.parse_args(argv)

    arch = architecture()
    engine = args.engine
    if engine == "auto":
        engine = "system" if system_docker_answers() else "project"
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    started_engine = False
    if engine == "project":
        running = subprocess.run([PY, str(ROOT / "scripts" / "docker_engine.py"), "status"], capture_output=True)
        if running.returncode != 0:
            subprocess.run([PY, str(ROOT / "scripts" / "docker_engine.py"), "start"], check=True, stdout=subprocess.DEVNULL)
            started_engine = True
        host = subprocess.run([PY, str(ROOT / "scripts" / "docker_engine.py"), "env"], capture_output=True, text=True,
                              check=True).stdout.strip().split("=", 1)[1]
        env.update({"DOCKER_HOST": host, "AWS_EC2_METADATA_DISABLED": "true", "SAM_RUN_LABEL": LABEL})
        sam = [PY, str(ROOT / "scripts" / "sam_hostnet.py")]
        engine_text = "project-local engine, offline stand-in base image (scripts/sam_standin_image.py)"
    else:
        sam = [str(ROOT / ".tools" / "venv" / "bin" / "sam")]
        engine_text = "yours (SAM pulls public.ecr.aws/lambda/provided:al2023-" + arch + ")"

    tmp = Path(tempfile.mkdtemp(prefix="sam-local-"))
    try:
        if not args.skip_build:
            subprocess.run(sam + ["build", "--beta-features", "--parameter-overrides", f"Architecture={arch}"],
                           cwd=ROOT, env=env, check=True)
        if engine == "project":
            subprocess.run([PY, str(ROOT / "scripts" / "sam_standin_image.py")], cwd=ROOT, env=env, check=True)
        doc = json.loads((ROOT / "env.json").read_text(encoding="utf-8"))
        doc["Parameters"].pop("CALLER_TRUST_AUTHORIZER", None)
        env_file = tmp / "sam-local-env.json"
        env_file.write_text(json.dumps(doc, indent=2), encoding="utf-8")

        print(banner(f"http://127.0.0.1:{args.port}", engine_text, env_file), flush=True)
        cmd = sam + ["local", "start-api", "--host", "127.0.0.1", "--port", str(args.port), "--env-vars", str(env_file),
                     "--parameter-overrides", f"Architecture={arch}", "--warm-containers", "EAGER"]
        if engine == "project":
            cmd.append("--skip-pull-image")
        # Ctrl-C reaches SAM from the terminal (it then removes its containers); a SIGTERM to
        # this script is passed on to SAM as one SIGINT.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGINT))
        return proc.wait()
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
        if engine == "project":
            remove_containers(env["DOCKER_HOST"])
        if started_engine:
            subprocess.run([PY, str(ROOT / "scripts" / "docker_engine.py"), "stop"])


def remove_containers(docker_host: str) -> None:
    """What SAM left behind (it does not always remove every warm container on Ctrl-C)."""
    import docker

    client = docker.DockerClient(base_url=docker_host, timeout=30)
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        c.remove(force=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
