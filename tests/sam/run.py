#!/usr/bin/env python3
"""`make test-sam`: the functions the way SAM users run them - `sam build`, `sam local invoke`
and `sam local start-api` in Docker - offline, every connection on 127.0.0.1.

Steps (each reported PASS/FAIL in the summary at the end; exit status 1 on any failure):

1. engine   - start the project-local Docker engine (scripts/docker_engine.py: no bridge, no
              iptables), unless one of this project is already running;
2. build    - `sam build --parameter-overrides Architecture=x86_64` (cargo-lambda and zig from
              .tools/venv), the command of `make sam-build ARCH=x86_64`, after one
              `cargo lambda build --release` of the four binaries (parallel links);
3. image    - the offline stand-in for public.ecr.aws/lambda/provided:al2023-x86_64
              (scripts/sam_standin_image.py; FOR OFFLINE TESTS ONLY);
4. invoke   - `sam local invoke <Function> -e events/<file> --env-vars <env.json + fake Ably>`
              for every event of events/, each to the function of its path. Every answer keeps
              the HTTP contract (no-store; errors as ErrorInfo with X-Ably-ErrorCode and
              -ErrorMessage), gets the status and code pinned in tests/tests/emulator.rs
              (EXPECTED), and equals the answer of the same built bootstrap under the plain
              Lambda emulator (no Docker; scripts/invoke.py) in status, headers and error body,
              and in the token's claims apart from time and nonce. Tokens are checked
              independently: JWTs with PyJWT, TokenRequests by the fake Ably (Python hmac).
              The function's log has one request line with the answer's status, and no secret;
5. api      - `sam local start-api` on the built template, then tests/sam/start_api.test.mjs:
              ably-js gets a JWT (authUrl = the local API), a TokenRequest it exchanges at the
              fake Ably, an Ably Token; a 403 and a 401 with ErrorInfo; CORS preflight answered
              by the function;
6. cleanup  - stop start-api, remove every container this run created (by label), stop the
              engine if this run started it. Also on failure and on Ctrl-C.

SAM runs through scripts/sam_hostnet.py (host networking for the Lambda containers; no
version check against PyPI), with --skip-pull-image, SAM_CLI_TELEMETRY=0 and
AWS_EC2_METADATA_DISABLED=true: nothing leaves the machine.

    .tools/venv/bin/python tests/sam/run.py [--skip-build] [--only invoke|api] [--jobs 3]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt  # noqa: E402  PyJWT, from .tools/venv
from env_file import read_env_file  # noqa: E402
from fake_ably import FakeAbly  # noqa: E402
import invoke as rie  # noqa: E402  scripts/invoke.py: the plain Lambda emulator, no Docker

PY = sys.executable
SAM = [PY, str(ROOT / "scripts" / "sam_hostnet.py")]
BUILD_DIR = ROOT / ".aws-sam" / "build"
LABEL = f"ably-authurl.sam-test.{os.getpid()}"

# (path, function binary, logical id), as template.yaml routes them.
FUNCTIONS = [
    ("/auth/jwt", "issue-jwt", "IssueJwtFunction"),
    ("/auth/token-request", "issue-token-request", "IssueTokenRequestFunction"),
    ("/auth/token", "issue-ably-token", "IssueAblyTokenFunction"),
    ("/auth/revoke", "revoke-tokens", "RevokeTokensFunction"),
]
ROUTE_OF = {fn: path for path, fn, _ in FUNCTIONS}

DEV = read_env_file(ROOT / "dev" / "dev.env")
DEV_API_KEY = DEV["ABLY_API_KEY"]
DEV_KEY_NAME, DEV_KEY_SECRET = DEV_API_KEY.split(":", 1)
DEV_CALLER_SECRET = DEV["CALLER_HS256_SECRET"]
SECRETS = [DEV_KEY_SECRET, DEV_CALLER_SECRET]

INVOKE_BOUND_S = 180  # one `sam local invoke` (a bound against hangs, not a measurement)
API_READY_BOUND_S = 180


# ---------------------------------------------------------------------- reporting

class Report:
    def __init__(self):
        self.results: list[tuple[str, bool, str]] = []

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, ok, detail))
        mark = "PASS" if ok else "FAIL"
        print(f"[{mark}] {name}" + (f": {detail}" if detail and not ok else ""), flush=True)
        return ok

    def failed(self) -> list[str]:
        return [n for n, ok, _ in self.results if not ok]

    def summary(self, started: float) -> str:
        passed = sum(1 for _, ok, _ in self.results if ok)
        lines = ["", "=" * 78, f"  SAM tests: {passed} passed, {len(self.failed())} failed "
                 f"({time.monotonic() - started:.0f} s)", "=" * 78]
        for name, ok, detail in self.results:
            if not ok:
                lines.append(f"  FAIL {name}")
                for d in detail.splitlines()[:40]:
                    lines.append(f"       {d}")
        if not self.failed():
            lines.append("  all passed")
        return "\n".join(lines)


class Failure(Exception):
    pass


def check(cond: bool, message: str) -> None:
    if not cond:
        raise Failure(message)


# ---------------------------------------------------------------------- environment

def sam_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAM_CLI_"))}
    env.update({
        "DOCKER_HOST": docker_host(),
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAM_RUN_LABEL": LABEL,
        "PATH": f"{ROOT / '.tools' / 'venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return env


def docker_host() -> str:
    out = subprocess.run([PY, str(ROOT / "scripts" / "docker_engine.py"), "env"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return out.split("=", 1)[1]


def engine_running() -> bool:
    return subprocess.run([PY, str(ROOT / "scripts" / "docker_engine.py"), "status"],
                          capture_output=True).returncode == 0


def write_env_file(directory: Path, name: str, ably_url: str, drop: tuple[str, ...] = ()) -> Path:
    """env.json (the settings of `sam local invoke --env-vars env.json`) with the fake Ably."""
    doc = json.loads((ROOT / "env.json").read_text(encoding="utf-8"))
    doc["Parameters"]["ABLY_REST_URL"] = ably_url
    for k in drop:
        doc["Parameters"].pop(k, None)
    path = directory / name
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


# ---------------------------------------------------------------------- events and answers

def pinned() -> dict[str, tuple[int, int]]:
    """EXPECTED of tests/tests/emulator.rs: event file -> (status, Ably code or 0)."""
    text = (ROOT / "tests" / "tests" / "emulator.rs").read_text(encoding="utf-8")
    table = text[text.index("const EXPECTED"):]
    table = table[: table.index("];")]
    return {f: (int(s), int(c)) for f, s, c in re.findall(r'\("([^"]+\.json)",\s*(\d+),\s*(\d+)\)', table)}


def events() -> list[tuple[str, str, dict]]:
    """(file, function, event) for every event in events/, by its path."""
    out = []
    for path in sorted((ROOT / "events").glob("*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        route = event.get("rawPath") or event.get("path") or ""
        fn = next((f for p, f, _ in FUNCTIONS if p == route), None)
        if fn is None:
            raise SystemExit(f"events/{path.name}: path {route!r} is none of the template's routes")
        out.append((path.name, fn, event))
    return out


class Answer:
    def __init__(self, response: dict):
        if "statusCode" not in response:
            raise Failure(f"no HTTP answer (an init or runtime error?): {json.dumps(response)[:800]}")
        self.status = int(response["statusCode"])
        self.headers = {k.lower(): str(v) for k, v in (response.get("headers") or {}).items()}
        for k, values in (response.get("multiValueHeaders") or {}).items():
            if values:
                self.headers.setdefault(k.lower(), ", ".join(values))
        body = response.get("body") or ""
        self.body = base64.b64decode(body).decode("utf-8") if response.get("isBase64Encoded") else body

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> dict:
        try:
            return json.loads(self.body)
        except json.JSONDecodeError as e:
            raise Failure(f"body is not JSON ({e}): {self.body[:300]}") from e

    def code(self) -> int:
        return 0 if self.status < 400 else int(self.json().get("error", {}).get("code") or 0)


def assert_contract(answer: Answer) -> None:
    check(answer.header("cache-control") == "no-store", f"Cache-Control {answer.header('cache-control')!r}")
    if answer.status >= 400:
        check(answer.header("content-type") == "application/json", f"error content type {answer.header('content-type')!r}")
        body = answer.json()
        error = body.get("error") or {}
        check(isinstance(error.get("code"), int), f"ErrorInfo code: {body}")
        check(error.get("statusCode") == answer.status, f"ErrorInfo statusCode != {answer.status}: {body}")
        check(bool(error.get("message")), f"ErrorInfo message: {body}")
        check(answer.header("x-ably-errorcode") == str(error["code"]), "X-Ably-ErrorCode")
        check(bool(answer.header("x-ably-errormessage")), "X-Ably-ErrorMessage")
        check("response" not in body, "a top-level `response` property")
    for secret in SECRETS:
        check(secret not in answer.body, "a secret in the body")
        check(all(secret not in v for v in answer.headers.values()), "a secret in a header")


def without(d: dict, fields: tuple[str, ...]) -> dict:
    return {k: v for k, v in d.items() if k not in fields}


def verify_jwt(token: str) -> tuple[dict, dict]:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, DEV_KEY_SECRET, algorithms=["HS256"], options={"verify_aud": False})
    return header, claims


def assert_same_answer(fn: str, got: Answer, ref: Answer) -> None:
    """SAM's answer vs the plain emulator's, for the same built bootstrap and event."""
    check(got.status == ref.status, f"status {got.status} under SAM, {ref.status} under the plain emulator: {got.body[:300]}")
    for h in ["content-type", "x-ably-errorcode", "access-control-allow-origin", "access-control-allow-credentials"]:
        check(got.header(h) == ref.header(h), f"header {h}: {got.header(h)!r} vs {ref.header(h)!r}")
    if got.status >= 400 or got.status == 204:
        check(got.body == ref.body, f"body differs:\n  sam:      {got.body}\n  emulator: {ref.body}")
        return
    if fn == "issue-jwt":
        (gh, gc), (rh, rc) = verify_jwt(got.body), verify_jwt(ref.body)
        check(gh == rh, f"JWT header {gh} vs {rh}")
        check(gc["exp"] - gc["iat"] == rc["exp"] - rc["iat"], "JWT lifetime")
        check(without(gc, ("iat", "exp")) == without(rc, ("iat", "exp")), f"JWT claims {gc} vs {rc}")
    elif fn == "issue-token-request":
        check(without(got.json(), ("timestamp", "nonce", "mac")) == without(ref.json(), ("timestamp", "nonce", "mac")),
              f"TokenRequest {got.body} vs {ref.body}")
    elif fn == "issue-ably-token":
        check(without(got.json(), ("token", "issued", "expires")) == without(ref.json(), ("token", "issued", "expires")),
              f"TokenDetails {got.body} vs {ref.body}")
    else:
        check(without(got.json(), ("results",)) == without(ref.json(), ("results",)), f"BatchResult {got.body} vs {ref.body}")


def post_json(url: str, body: str) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body.encode(), method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def assert_token(fn: str, answer: Answer, fake: FakeAbly) -> None:
    if fn == "issue-jwt":
        check(answer.header("content-type") == "application/jwt", f"content type {answer.header('content-type')}")
        header, claims = verify_jwt(answer.body)
        check(header.get("kid") == DEV_KEY_NAME, f"kid {header}")
        check(isinstance(claims.get("x-ably-capability"), str), f"x-ably-capability: {claims}")
    elif fn == "issue-token-request":
        check(answer.header("content-type") == "application/json", "content type")
        check(answer.json().get("keyName") == DEV_KEY_NAME, f"keyName: {answer.body}")
        status, body = post_json(f"{fake.url}/keys/{DEV_KEY_NAME}/requestToken", answer.body)
        check(200 <= status < 300, f"the fake Ably refused the TokenRequest: {status} {body}")
    elif fn == "issue-ably-token":
        details = answer.json()
        check(bool(details.get("token")), f"token: {details}")
        check(details.get("keyName") == DEV_KEY_NAME, f"keyName: {details}")
    else:
        result = answer.json()
        check(isinstance(result.get("successCount"), int) and isinstance(result.get("failureCount"), int),
              f"BatchResult: {result}")


def caller_token_signatures(event: dict) -> list[str]:
    auth = next((v for k, v in (event.get("headers") or {}).items() if k.lower() == "authorization"), "")
    token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
    sig = token.rsplit(".", 1)[-1] if token.count(".") == 2 else ""
    return [sig] if len(sig) >= 8 else []


def invoke_answer(stdout: str) -> dict:
    """The function's answer: the last JSON object on sam's stdout that is no log line (the
    function's own JSON logs go to stdout too, before it)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and ("statusCode" in value or "errorType" in value or "errorMessage" in value):
                return value
    raise Failure(f"no answer on sam's stdout:\n{stdout[-1500:]}")


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


# ---------------------------------------------------------------------- steps

def step_engine(report: Report) -> bool:
    """True when this run started the engine (and so stops it)."""
    if engine_running():
        report.add("engine: project Docker engine already running (reused, left running)", True)
        return False
    out = subprocess.run([PY, str(ROOT / "scripts" / "docker_engine.py"), "start"], capture_output=True, text=True)
    if not report.add("engine: start dockerd (no bridge, no iptables)", out.returncode == 0, out.stderr + out.stdout):
        raise Failure("no Docker engine")
    return True


def step_build(report: Report) -> None:
    start = time.monotonic()
    # The four binaries in one cargo-lambda run first: cargo links (fat LTO) two at a time on
    # two cores, and `sam build`'s four per-function runs of `cargo lambda build --release
    # --bin NAME` (same flags, same features) then find them up to date.
    prebuild = ["cargo", "lambda", "build", "--release"] + [a for _, fn, _ in FUNCTIONS for a in ("--bin", fn)]
    print("+ " + " ".join(prebuild), flush=True)
    if subprocess.run(prebuild, cwd=ROOT, env=sam_env()).returncode != 0:
        report.add("build: cargo lambda build --release (the four functions)", False, "output above")
        raise Failure("cargo lambda build failed")
    cmd = SAM + ["build", "--beta-features", "--parameter-overrides", "Architecture=x86_64"]
    print("+ sam " + " ".join(cmd[2:]), flush=True)
    out = subprocess.run(cmd, cwd=ROOT, env=sam_env())
    if not report.add(f"build: sam build Architecture=x86_64 ({time.monotonic() - start:.0f} s)", out.returncode == 0,
                      "sam build failed (output above)"):
        raise Failure("sam build failed")


def step_image(report: Report) -> None:
    out = subprocess.run([PY, str(ROOT / "scripts" / "sam_standin_image.py")], cwd=ROOT, env=sam_env(),
                         capture_output=True, text=True)
    print(out.stderr.strip(), flush=True)
    if not report.add("image: stand-in public.ecr.aws/lambda/provided:al2023-x86_64 (offline tests only)",
                      out.returncode == 0, out.stderr + out.stdout):
        raise Failure("no base image")


def sam_invoke(logical_id: str, event_file: str, env_file: Path) -> tuple[dict, str, float]:
    cmd = SAM + ["local", "invoke", logical_id, "-e", f"events/{event_file}", "--env-vars", str(env_file),
                 "--skip-pull-image", "--parameter-overrides", "Architecture=x86_64"]
    start = time.monotonic()
    out = subprocess.run(cmd, cwd=ROOT, env=sam_env(), capture_output=True, text=True, timeout=INVOKE_BOUND_S)
    took = time.monotonic() - start
    if out.returncode != 0:
        raise Failure(f"sam local invoke exited {out.returncode}:\n{out.stderr[-2000:]}")
    # The function's logs: its stdout and stderr, which SAM passes on as its own.
    return invoke_answer(out.stdout), out.stdout + out.stderr, took


def built_bootstrap(logical_id: str) -> Path:
    """The `bootstrap` sam build made for `logical_id`: in the directory its built template's
    CodeUri names (`<Id>` alone, or `<Id>-Shared` when functions share one build, as the
    managed-instances twins do)."""
    lines = (BUILD_DIR / "template.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index(f"  {logical_id}:")
    for line in lines[start + 1:]:
        if line.startswith("  ") and not line.startswith("   "):
            break  # the next resource
        if line.strip().startswith("CodeUri:"):
            return BUILD_DIR / line.split(":", 1)[1].strip() / "bootstrap"
    return BUILD_DIR / logical_id / "bootstrap"


def reference_answers(fn: str, logical_id: str, items: list[tuple[str, dict]], env_file: Path) -> dict[str, Answer]:
    """The same built bootstrap under the plain Lambda emulator (scripts/invoke.py), no Docker."""
    env = rie.function_env(fn, env_file, [])
    emulator = rie.Emulator(built_bootstrap(logical_id), fn, env)
    try:
        return {name: Answer(emulator.invoke(json.dumps(event).encode())) for name, event in items}
    finally:
        emulator.stop()


def step_invoke(report: Report, fake: FakeAbly, tmp: Path, jobs: int) -> None:
    env_file = write_env_file(tmp, "invoke-env.json", fake.url)
    expected = pinned()
    all_events = events()
    logical = {fn: lid for _, fn, lid in FUNCTIONS}
    covered = {fn for _, fn, _ in all_events}
    report.add("invoke: every function has events", covered == set(logical), f"without events: {set(logical) - covered}")

    refs: dict[str, Answer] = {}
    for fn, lid in logical.items():
        items = [(name, ev) for name, ev_fn, ev in [(n, f, e) for n, f, e in all_events] if ev_fn == fn]
        refs.update(reference_answers(fn, lid, items, env_file))

    def one(item):
        name, fn, event = item
        response, logs, took = sam_invoke(logical[fn], name, env_file)
        answer = Answer(response)
        assert_contract(answer)
        assert_same_answer(fn, answer, refs[name])
        if name in expected:
            check((answer.status, answer.code()) == expected[name],
                  f"pinned (status, code) {expected[name]}, got {(answer.status, answer.code())}: {answer.body[:300]}")
        else:
            raise Failure("not pinned in tests/tests/emulator.rs EXPECTED: pin its status and code there")
        if answer.status == 200:
            assert_token(fn, answer, fake)
        lines = json_lines(logs)
        requests = [l for l in lines if l.get("route") == fn and "status" in l]
        check([l["status"] for l in requests] == [answer.status],
              f"one request log line with status {answer.status}; got {[l.get('status') for l in requests]}:\n{logs[-1500:]}")
        check(sum(1 for l in lines if l.get("message") == "initialised: serving requests") == 1, "one init line")
        for secret in SECRETS + caller_token_signatures(event):
            check(secret not in logs, "a secret or the caller's token in the logs")
        return answer, took

    # The first invocation alone: SAM builds its emulation image on top of the base once.
    first, rest = all_events[0], all_events[1:]
    results = {}

    def run(item):
        try:
            answer, took = one(item)
            return item[0], True, f"{answer.status} ({took:.1f} s)"
        except Failure as e:
            return item[0], False, str(e)
        except Exception as e:  # noqa: BLE001
            return item[0], False, "".join(traceback.format_exception(e))[-2000:]

    name, ok, detail = run(first)
    results[name] = (ok, detail)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, ok, detail in pool.map(run, rest):
            results[name] = (ok, detail)
    for name, fn, _ in all_events:
        ok, detail = results[name]
        report.add(f"invoke: {logical[fn]} {name} -> {detail if ok else 'error'}", ok, detail)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(fake: FakeAbly, tmp: Path, name: str, overrides: list[str], warm: str) -> tuple[subprocess.Popen, str, Path]:
    """`sam local start-api` on a free loopback port with env.json (the fake Ably; the template
    decides CALLER_TRUST_AUTHORIZER) and `overrides`; its output in `tmp/<name>.log`."""
    env_file = write_env_file(tmp, f"{name}-env.json", fake.url, drop=("CALLER_TRUST_AUTHORIZER",))
    port = free_port()
    log_path = tmp / f"{name}.log"
    cmd = SAM + ["local", "start-api", "--host", "127.0.0.1", "--port", str(port), "--env-vars", str(env_file),
                 "--skip-pull-image", "--parameter-overrides", " ".join(overrides), "--warm-containers", warm]
    print("+ sam " + " ".join(cmd[2:]), flush=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=sam_env(), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}", log_path


def step_api(report: Report, fake: FakeAbly, tmp: Path) -> None:
    # The template decides CALLER_TRUST_AUTHORIZER (its UseApiJwtAuthorizer condition: false
    # here, as no authorizer runs), not env.json's value for the authorizer-context events.
    proc, base, log_path = start_api(fake, tmp, "start-api", ["Architecture=x86_64"], "EAGER")
    try:
        ready = wait_api_ready(proc, base, log_path)
        if not report.add("api: sam local start-api serves the shipped template", ready, tail(log_path)):
            return
        mounted = log_path.read_text(errors="replace")
        for path, _, lid in FUNCTIONS:
            report.add(f"api: {lid} mounted at {path}", f"Mounting {lid} at {base}{path}" in mounted, tail(log_path))
        node_env = {**os.environ, "SAM_API_URL": base, "FAKE_ABLY_URL": fake.url}
        out = subprocess.run(["node", "--test", "--test-reporter=spec", str(ROOT / "tests" / "sam" / "start_api.test.mjs")],
                             cwd=ROOT, env=node_env, capture_output=True, text=True, timeout=600)
        print(out.stdout, out.stderr, sep="\n", flush=True)
        for line in out.stdout.splitlines():
            m = re.match(r"^\s*([✔✖])\s+(\S+)", line)
            if m:
                report.add(f"api (ably-js): {m.group(2)}", m.group(1) == "✔", "see the node output above")
        report.add("api: node --test tests/sam/start_api.test.mjs", out.returncode == 0, out.stdout[-3000:])
    finally:
        stop_process(proc)
    logs = log_path.read_text(errors="replace")
    report.add("api: no secret in the start-api logs", all(s not in logs for s in SECRETS), "a secret in the logs")
    lines = json_lines(logs)
    for _, fn, lid in FUNCTIONS:
        served = [l for l in lines if l.get("route") == fn and isinstance(l.get("status"), int)]
        report.add(f"api: {lid} logged the requests it answered ({len(served)})", bool(served), tail(log_path))


def step_api_with_authorizer(report: Report, fake: FakeAbly, tmp: Path) -> None:
    """The template's other branch: ApiJwtAuthorizer=true puts the JWT authorizer on every route
    (`security: [{CallerJwt: []}]`) and sets CALLER_TRUST_AUTHORIZER. SAM's local API must
    accept it too. SAM runs no JWT authorizer locally, so the function sees no authorizer
    context and no credential, and issues env.json's anonymous grant itself."""
    overrides = ["Architecture=x86_64", "ApiJwtAuthorizer=true", "CallerIssuer=https://issuer.example.com",
                 "CallerAudience=ably-auth-tests"]
    proc, base, log_path = start_api(fake, tmp, "start-api-authorizer", overrides, "LAZY")
    try:
        ready = wait_api_ready(proc, base, log_path)
        if not report.add("api (ApiJwtAuthorizer=true): sam local start-api serves the template", ready,
                          tail(log_path)):
            return
        try:
            with urllib.request.urlopen(f"{base}/auth/jwt", timeout=60) as res:
                status, kind = res.status, res.headers.get("content-type")
        except urllib.error.HTTPError as e:
            status, kind = e.code, e.headers.get("content-type")
        report.add("api (ApiJwtAuthorizer=true): no authorizer context, no credential: the anonymous JWT",
                   (status, kind) == (200, "application/jwt"), f"got {status} {kind}\n{tail(log_path)}")
    finally:
        stop_process(proc)


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def wait_api_ready(proc: subprocess.Popen, base: str, log_path: Path) -> bool:
    deadline = time.monotonic() + API_READY_BOUND_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            # Answered by the function itself: every answer of ours carries Cache-Control: no-store.
            with urllib.request.urlopen(f"{base}/auth/jwt", timeout=30) as res:
                if res.headers.get("cache-control") == "no-store":
                    return True
        except urllib.error.HTTPError as e:
            if e.headers.get("cache-control") == "no-store":
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def stop_process(proc: subprocess.Popen) -> None:
    """Ctrl-C for SAM (it then stops and removes its warm containers), then SIGTERM, SIGKILL."""
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def remove_containers(report: Report) -> None:
    try:
        import docker

        client = docker.DockerClient(base_url=docker_host(), timeout=30)
        left = client.containers.list(all=True, filters={"label": LABEL})
        for c in left:
            c.remove(force=True)
        report.add(f"cleanup: containers of this run removed ({len(left)} left by SAM: "
                   f"{[(c.short_id, c.status) for c in left]})", True)
    except Exception as e:  # noqa: BLE001
        report.add("cleanup: remove containers", False, str(e))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-build", action="store_true", help="use the existing .aws-sam/build")
    p.add_argument("--only", choices=["invoke", "api"], help="run only these tests")
    p.add_argument("--jobs", type=int, default=int(os.environ.get("SAM_TEST_JOBS", "3")),
                   help="sam local invoke processes at once (default 3)")
    p.add_argument("--keep-engine", action="store_true", help="leave the engine running at the end")
    args = p.parse_args(argv)

    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise SystemExit(f"the SAM tests build and run x86_64 functions; this machine is {platform.machine()}")
    if not shutil.which("node") and args.only != "invoke":
        raise SystemExit("node not found (the start-api test drives ably-js)")

    started = time.monotonic()
    report = Report()
    started_engine = False
    fake = None
    tmp = Path(tempfile.mkdtemp(prefix="sam-test-"))

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        started_engine = step_engine(report)
        if not args.skip_build:
            step_build(report)
        step_image(report)
        fake = FakeAbly({DEV_KEY_NAME: DEV_KEY_SECRET})
        if args.only in (None, "invoke"):
            step_invoke(report, fake, tmp, max(1, args.jobs))
        if args.only in (None, "api"):
            step_api(report, fake, tmp)
            step_api_with_authorizer(report, fake, tmp)
    except Failure as e:
        report.add("stopped", False, str(e))
    except KeyboardInterrupt as e:
        report.add("interrupted", False, str(e))
    except Exception as e:  # noqa: BLE001
        report.add("error", False, "".join(traceback.format_exception(e))[-3000:])
    finally:
        if fake:
            fake.close()
        if engine_running():
            remove_containers(report)
        if started_engine and not args.keep_engine:
            out = subprocess.run([PY, str(ROOT / "scripts" / "docker_engine.py"), "stop"], capture_output=True, text=True)
            report.add("cleanup: engine stopped (started by this run)", out.returncode == 0 and not engine_running(),
                       out.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    print(report.summary(started), flush=True)
    return 1 if report.failed() else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
