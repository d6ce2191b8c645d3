#!/usr/bin/env python3
"""Print a development caller token: an HS256 session JWT signed with the dev caller secret.

This stands in for the session token your own backend would give a signed-in user; the
client sends it to the authUrl as `Authorization: Bearer <token>` (ably-js `authHeaders`).
For development only: the dev caller secret is public (dev/dev.env).

    make dev-token SUB=alice ROLES=moderator NAME=Alice ORG=acme TTL=3600
    .tools/venv/bin/python scripts/dev_token.py --sub alice --roles moderator,admin
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jwt  # PyJWT

sys.path.insert(0, str(Path(__file__).resolve().parent))
from env_file import read_env_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEV_ENV = ROOT / "dev" / "dev.env"


def dev_setting(name: str, env_file: Path = DEV_ENV) -> str:
    """Read one KEY=VALUE from the dev env file (the single source of the dev defaults)."""
    value = read_env_file(env_file).get(name)
    if value is None:
        raise SystemExit(f"{name} is missing from {env_file}; restore it from git")
    return value


def caller_token(sub: str, name: str | None, org: str | None, roles: list[str], ttl: int,
                 secret: str, now: int | None = None) -> str:
    now = int(time.time()) if now is None else now
    claims: dict[str, object] = {"sub": sub}
    if name:
        claims["name"] = name
    if org:
        claims["org"] = org
    claims["roles"] = roles
    claims["iat"] = now
    claims["exp"] = now + ttl
    return jwt.encode(claims, secret, algorithm="HS256")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sub", required=True, help="the user id (becomes the Ably clientId under the dev policy)")
    p.add_argument("--name", default=None, help="display name (dev policy: ably.channel.chat:* claim); default: SUB")
    p.add_argument("--org", default="acme", help="organisation (dev policy: x-ably-revocation-key); default: acme")
    p.add_argument("--roles", default="", help="comma-separated roles, e.g. moderator,admin; default: none")
    p.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds; default: 3600")
    p.add_argument("--secret", default=None, help="HS256 secret; default: CALLER_HS256_SECRET from dev/dev.env")
    args = p.parse_args(argv)
    if not args.sub.strip():
        p.error("--sub must not be empty (try SUB=alice)")
    if args.ttl <= 0:
        p.error("--ttl must be a positive number of seconds")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    secret = args.secret or dev_setting("CALLER_HS256_SECRET")
    print(caller_token(args.sub, args.name or args.sub, args.org, roles, args.ttl, secret))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
