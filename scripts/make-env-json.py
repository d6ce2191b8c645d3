#!/usr/bin/env python3
"""Regenerate env.json: the development settings for `sam local invoke --env-vars env.json`
and `make invoke`, derived from dev/dev.env and dev/policy.json (the settings of `make dev`).

- "Parameters" applies to every function: the public development key and caller secret, the
  dev policy inline (the Lambda container has no dev/ directory), and
  CALLER_TRUST_AUTHORIZER=true so that the authorizer-context events in events/ show an
  identity (these events stand for what API Gateway's authorizer would send; in a
  deployment the template turns the trust flag on only together with the authorizer).
- The TokenRequest and Ably Token functions get the dev policy without channelClaims,
  rateLimits and revocationKey, which only Ably JWTs can carry and which those functions
  refuse at start-up (dev/policy-token-routes.json); the revocation function a revocable key.

The empty values unset what template.yaml sets for the cloud (Secrets Manager ids, ...).
Run: python3 scripts/make-env-json.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from env_file import read_env_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def env_json() -> dict:
    dev = read_env_file(ROOT / "dev" / "dev.env")
    routes_env_file = ROOT / "dev" / "token-routes.env"
    token_routes_env = read_env_file(routes_env_file) if routes_env_file.is_file() else {}
    policy = json.loads((ROOT / "dev" / "policy.json").read_text(encoding="utf-8"))
    # The token routes' policy, as `make dev` gives it to them (dev.env's TOKEN_ROUTES_POLICY_FILE):
    # env.json sets each function's TOKEN_POLICY, as the template does.
    routes_file = ROOT / dev["TOKEN_ROUTES_POLICY_FILE"]
    token_routes_policy = {"TOKEN_POLICY": compact(json.loads(routes_file.read_text(encoding="utf-8")))}
    return {
        "Parameters": {
            "ABLY_API_KEY": dev["ABLY_API_KEY"],
            "ABLY_API_KEY_SECRET_ID": "",
            "CALLER_HS256_SECRET": dev["CALLER_HS256_SECRET"],
            "CALLER_HS256_SECRET_ID": "",
            "CALLER_TRUST_AUTHORIZER": "true",
            "CALLER_ISSUER": "",
            "CALLER_AUDIENCE": "",
            "CALLER_JWKS_URL": "",
            "CALLER_COOKIE": "",
            "TOKEN_POLICY": compact(policy),
            "ABLY_KEY_REVOCABLE": "false",
            "ABLY_QUERY_TIME": "false",
            # As dev/token-routes.env: a closed loopback port, so /auth/token and /auth/revoke
            # answer 503 instead of sending the (fake) dev key to Ably. Point it at a real
            # Ably (with a real key) or a fake: scripts/invoke.py ... --set ABLY_REST_URL=...
            "ABLY_REST_URL": token_routes_env.get("ABLY_REST_URL", ""),
            "CORS_ALLOWED_ORIGINS": dev["CORS_ALLOWED_ORIGINS"],
            "RUST_LOG": "info",
        },
        "IssueTokenRequestFunction": token_routes_policy,
        "IssueAblyTokenFunction": token_routes_policy,
        # Revocation needs a key with revocable tokens (Ably dashboard); the dev key "has" them.
        "RevokeTokensFunction": {"ABLY_KEY_REVOCABLE": "true"},
    }


if __name__ == "__main__":
    out = ROOT / "env.json"
    out.write_text(json.dumps(env_json(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")
