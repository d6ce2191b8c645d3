"""A loopback fake of Ably's REST API for the SAM tests (tests/sam/run.py).

It stands where Ably's REST host would be, for the functions in their containers (host
network: ABLY_REST_URL=http://127.0.0.1:<port>) and for ably-js in the start-api test:

- POST /keys/{keyName}/requestToken: verifies the TokenRequest as Ably does, with Python's
  hmac (independently of the functions' Rust code): keyName, MAC over the signText,
  timestamp within 2 minutes, nonce of 16+ characters never seen before (40105 on replay);
  answers TokenDetails.
- POST /keys/{keyName}/revokeTokens: Basic auth with that key; 201 with a BatchResult.
- GET /time: [now in ms].
- GET /_requests: every request so far (JSON), for the node test to assert on;
  POST /_fail {"status","code","message"}: the next request gets that error.

Binds 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY_PATH = re.compile(r"^/keys/([^/]+)/(requestToken|revokeTokens)$")


def sign_text(tr: dict) -> str:
    def f(v):
        return "" if v is None else str(v)

    fields = [tr.get("keyName"), f(tr.get("ttl")), f(tr.get("capability")), f(tr.get("clientId")),
              f(tr.get("timestamp")), f(tr.get("nonce"))]
    return "\n".join(fields) + "\n"


class FakeAbly:
    def __init__(self, keys: dict[str, str]):
        """keys: keyName -> secret."""
        self.keys = keys
        self.requests: list[dict] = []
        self.nonces: set[str] = set()
        self.faults: list[dict] = []
        self.issued = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                fake.handle(self, "GET")

            def do_POST(self):
                fake.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ handling

    def send(self, h: BaseHTTPRequestHandler, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def fail(self, h, status: int, code: int, message: str) -> None:
        self.send(h, status, {"error": {"message": message, "code": code, "statusCode": status}},
                  {"x-ably-errorcode": str(code)})

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length).decode("utf-8", errors="replace") if length else ""
        path = h.path.split("?")[0]
        if path == "/_requests" and method == "GET":
            with self.lock:
                return self.send(h, 200, self.requests)
        if path == "/_fail" and method == "POST":
            with self.lock:
                self.faults.append(json.loads(raw))
            return self.send(h, 200, {"ok": True})
        entry = {"method": method, "path": h.path, "headers": {k.lower(): v for k, v in h.headers.items()},
                 "body": raw}
        with self.lock:
            self.requests.append(entry)
            fault = self.faults.pop(0) if self.faults else None
        if fault:
            return self.fail(h, fault["status"], fault["code"], fault["message"])
        now = int(time.time() * 1000)
        if method == "GET" and path == "/time":
            return self.send(h, 200, [now])
        m = KEY_PATH.match(path)
        if not m or method != "POST":
            return self.fail(h, 404, 40400, "no such resource")
        key_name = m.group(1).replace("%3A", ":")
        secret = self.keys.get(key_name)
        if secret is None:
            return self.fail(h, 404, 40400, "key not found")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return self.fail(h, 400, 40000, "body is not JSON")
        if m.group(2) == "requestToken":
            return self.request_token(h, entry, key_name, secret, body, now)
        return self.revoke_tokens(h, key_name, secret, body, now)

    def request_token(self, h, entry, key_name, secret, body, now) -> None:
        if body.get("keyName") != key_name:
            return self.fail(h, 401, 40101, "keyName does not match")
        expected = hmac.new(secret.encode(), sign_text(body).encode(), hashlib.sha256).digest()
        try:
            given = base64.b64decode(str(body.get("mac") or ""), validate=True)
        except ValueError:
            given = b""
        if not hmac.compare_digest(given, expected):
            return self.fail(h, 401, 40101, "Invalid mac")
        ts = body.get("timestamp")
        if not isinstance(ts, int) or abs(ts - now) > 120_000:
            return self.fail(h, 401, 40104, "Timestamp not current")
        nonce = body.get("nonce")
        if not isinstance(nonce, str) or len(nonce) < 16:
            return self.fail(h, 400, 40000, "nonce too short")
        with self.lock:
            if nonce in self.nonces:
                return self.fail(h, 401, 40105, "Nonce value replayed")
            self.nonces.add(nonce)
            self.issued += 1
            n = self.issued
        ttl = body.get("ttl") or 3_600_000
        details = {"token": f"fake-ably-token-{n}.{secrets.token_hex(8)}", "keyName": key_name,
                   "issued": now, "expires": now + ttl, "capability": body.get("capability") or '{"*":["*"]}'}
        if body.get("clientId"):
            details["clientId"] = body["clientId"]
        entry["tokenRequest"] = body
        entry["tokenDetails"] = details
        return self.send(h, 200, details)

    def revoke_tokens(self, h, key_name, secret, body, now) -> None:
        basic = "Basic " + base64.b64encode(f"{key_name}:{secret}".encode()).decode()
        if h.headers.get("authorization") != basic:
            return self.fail(h, 401, 40101, "Invalid credentials")
        targets = body.get("targets")
        if not isinstance(targets, list) or not 1 <= len(targets) <= 100:
            return self.fail(h, 400, 40003, "between 1 and 100 targets")
        issued_before = body.get("issuedBefore") or now
        margin = 30_000 if body.get("allowReauthMargin") else 0
        results = [{"target": t, "issuedBefore": issued_before, "appliesAt": issued_before + margin} for t in targets]
        return self.send(h, 201, {"successCount": len(results), "failureCount": 0, "results": results})
