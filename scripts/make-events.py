#!/usr/bin/env python3
"""Regenerate the API Gateway HTTP API (v2) events in events/ for the issue-jwt route.

Caller tokens are HS256-signed with the development caller secret (dev only!) and expire
in 2100, so the events stay valid for `sam local invoke` and the handler tests.
Run: python3 scripts/make-events.py
"""
import base64, hashlib, hmac, json, os

DEV_CALLER_SECRET = b"dev-caller-secret-0123456789abcdef0123456789"
FAR_FUTURE = 4102444800  # 2100-01-01
ISSUED = 1767225600      # 2026-01-01


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def caller_token(claims, secret=DEV_CALLER_SECRET, alg="HS256"):
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    if alg == "none":
        return f"{header}.{payload}."
    sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(sig)}"


def event(method="GET", path="/auth/jwt", query="", headers=None, body=None, route_key=None):
    hdrs = {"host": "abc123.execute-api.eu-west-1.amazonaws.com", "user-agent": "ably-js/2 browser",
            "x-forwarded-proto": "https", "accept": "*/*"}
    hdrs.update(headers or {})
    ev = {
        "version": "2.0",
        "routeKey": route_key or f"ANY {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com", "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "ably-js/2 browser"},
            "requestId": "req-" + hashlib.sha1((method + path + query + json.dumps(hdrs)).encode()).hexdigest()[:12],
            "routeKey": route_key or f"ANY {path}", "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": ISSUED * 1000,
        },
        "isBase64Encoded": False,
    }
    if query:
        params = {}
        for pair in query.split("&"):
            k, _, v = pair.partition("=")
            params[k] = v
        ev["queryStringParameters"] = params
    if body is not None:
        ev["body"] = body
    return ev


def bearer(claims):
    return {"authorization": "Bearer " + caller_token(claims)}


ALICE = {"sub": "alice", "name": "Alice", "org": "acme", "iat": ISSUED, "exp": FAR_FUTURE}
MODERATOR = {"sub": "mo", "name": "Mo", "org": "acme", "roles": ["moderator"], "iat": ISSUED, "exp": FAR_FUTURE}
EXPIRED = {"sub": "alice", "name": "Alice", "iat": ISSUED - 7200, "exp": ISSUED - 3600}
ORIGIN = {"origin": "http://localhost:8080"}

EVENTS = {
    "jwt-get-valid-caller.json": event(query="rnd=8712", headers={**bearer(ALICE), **ORIGIN}),
    "jwt-post-form.json": event("POST", headers={**bearer(ALICE), "content-type": "application/x-www-form-urlencoded"},
                                body="ttl=600000&clientId=alice&rnd=1"),
    "jwt-post-json.json": event("POST", headers={**bearer(ALICE), "content-type": "application/json"},
                                body=json.dumps({"capability": {"chat:alice": ["publish"]}, "ttl": 900000})),
    "jwt-moderator.json": event(headers=bearer(MODERATOR)),
    "jwt-anonymous.json": event(query="rnd=1"),
    "jwt-expired-caller.json": event(headers=bearer(EXPIRED)),
    "jwt-bad-signature.json": event(headers={"authorization": "Bearer " + caller_token(ALICE, secret=b"not-the-dev-secret-0123456789abcdef")}),
    "jwt-alg-none.json": event(headers={"authorization": "Bearer " + caller_token(ALICE, alg="none")}),
    "jwt-bad-ttl.json": event(query="ttl=one-hour", headers=bearer(ALICE)),
    "jwt-bad-capability.json": event(query="capability=%7B%22chat%3A*%22%3A%5B%22publsh%22%5D%7D", headers=bearer(ALICE)),
    "jwt-client-id-mismatch.json": event(query="clientId=mallory", headers=bearer(ALICE)),
    "jwt-capability-denied.json": event(query="capability=%7B%22admin%22%3A%5B%22publish%22%5D%7D", headers=bearer(ALICE)),
    "jwt-preflight.json": event("OPTIONS", headers={**ORIGIN, "access-control-request-method": "GET",
                                                    "access-control-request-headers": "authorization"}),
    "jwt-method-not-allowed.json": event("DELETE", headers=bearer(ALICE)),
}

# ---- Events for the other routes (template.yaml: /auth/token-request, /auth/token, /auth/revoke):
# the cases the other route events in events/ do not cover yet, and API Gateway authorizer
# context as the template's HTTP API JWT authorizer sends it (claims as strings, arrays
# stringified as "[a b]"); the Authorization header then holds the identity provider's
# token, which the function does not verify itself (CALLER_TRUST_AUTHORIZER=true).

ADMIN = {"sub": "ops-1", "name": "Ops", "org": "acme", "roles": ["admin"], "iat": ISSUED, "exp": FAR_FUTURE}
IDP_TOKEN = (b64(json.dumps({"alg": "RS256", "kid": "idp-key-1", "typ": "JWT"}, separators=(",", ":")).encode())
             + "." + b64(json.dumps({"sub": "carol", "iss": "https://idp.example.com/"}, separators=(",", ":")).encode())
             + ".signature-checked-by-api-gateway")


def with_jwt_authorizer(ev, claims, scopes=None):
    """Add the HTTP API JWT authorizer context API Gateway puts into the event."""
    def text(v):
        return "[" + " ".join(str(x) for x in v) + "]" if isinstance(v, list) else str(v)
    ev["requestContext"]["authorizer"] = {"jwt": {"claims": {k: text(v) for k, v in claims.items()},
                                                  "scopes": scopes}}
    return ev


CAROL = {"sub": "carol", "name": "Carol", "org": "acme", "iss": "https://idp.example.com/", "aud": "ably-authurl",
         "iat": ISSUED, "exp": FAR_FUTURE}
IDP_BEARER = {"authorization": "Bearer " + IDP_TOKEN}

ROUTE_EVENTS = {
    "token-request-bad-ttl.json": event(path="/auth/token-request", query="ttl=one-hour", headers=bearer(ALICE)),
    "token-request-authorizer.json": with_jwt_authorizer(
        event(path="/auth/token-request", query="rnd=5", headers=IDP_BEARER), CAROL),
    "ably-token-expired-caller.json": event(path="/auth/token", headers=bearer(EXPIRED)),
    "ably-token-bad-capability.json": event(path="/auth/token", query="capability=%5B%22chat%3A*%22%5D",
                                            headers=bearer(ALICE)),
    "ably-token-authorizer.json": with_jwt_authorizer(
        event("POST", path="/auth/token", headers={**IDP_BEARER, "content-type": "application/x-www-form-urlencoded"},
              body="clientId=carol&rnd=2"), CAROL),
    "revoke-authorizer-admin.json": with_jwt_authorizer(
        event("POST", path="/auth/revoke", headers={**IDP_BEARER, "content-type": "application/json"},
              body=json.dumps({"clientIds": ["mallory"]})),
        {**CAROL, "sub": "ops-2", "roles": ["admin"]}),
}
EVENTS.update(ROUTE_EVENTS)

if __name__ == "__main__":
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "events")
    os.makedirs(here, exist_ok=True)
    for name, ev in EVENTS.items():
        with open(os.path.join(here, name), "w") as f:
            json.dump(ev, f, indent=2)
            f.write("\n")
    print(f"wrote {len(EVENTS)} events to events/")
