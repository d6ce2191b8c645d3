#!/usr/bin/env python3
"""`make dev`: serve every function of the workspace locally under `cargo lambda watch`.

Routes come from `[workspace.metadata.lambda.watch.router]` in the root Cargo.toml (one
line per function), settings from a dev env file (default dev/dev.env: a public
development key, caller secret and the example policy dev/policy.json). Binds to
127.0.0.1 only. Uses the function's own CORS handling (`--disable-cors`), as in AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev_token import caller_token, dev_setting  # noqa: E402
from env_file import read_env_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# Settings the functions read. Inherited values are dropped so that the dev env file alone
# decides (a stray TOKEN_POLICY in your shell would otherwise clash with TOKEN_POLICY_FILE).
CONFIG_PREFIXES = ("ABLY_", "CALLER_", "TOKEN_POLICY", "TOKEN_ROUTES_POLICY", "CORS_", "SECRET_CACHE_", "AWS_ENDPOINT_URL")


def routes() -> dict[str, object]:
    out = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    meta = json.loads(out).get("metadata") or {}
    router = meta.get("lambda", {}).get("watch", {}).get("router", {})
    if not router:
        raise SystemExit("no routes: add [workspace.metadata.lambda.watch.router] to Cargo.toml")
    return router


def functions(router: dict[str, object]) -> list[str]:
    names: list[str] = []
    for target in router.values():
        for name in ([target] if isinstance(target, str) else [t["function"] for t in target]):
            if name not in names:
                names.append(name)
    return names


def banner(port: int, router: dict[str, object], env_file: Path) -> str:
    base = f"http://127.0.0.1:{port}"
    settings = read_env_file(env_file)
    secret = dev_setting("CALLER_HS256_SECRET", env_file)
    alice = caller_token("alice", "Alice", "acme", [], 3600, secret)
    bar = "=" * 78
    lines = [bar, f"  Ably authUrl functions (cargo lambda watch) on {base}", bar, ""]
    for path, target in sorted(router.items()):
        shown = target if isinstance(target, str) else ", ".join(f"{t['method']}→{t['function']}" for t in target)
        lines.append(f"  {base}{path:<24} {shown}")
    lines += ["", f"  DEVELOPMENT SETTINGS ({env_file.relative_to(ROOT) if env_file.is_relative_to(ROOT) else env_file})"
              " — for development only: this key and this caller secret are public;",
              "  never deploy them. Real deployments take the key from Secrets Manager / ABLY_API_KEY.", ""]
    for k, v in settings.items():
        lines.append(f"    {k}={v}")
    lines += try_it(base, alice)
    lines += [
        "",
        "  (With the dev key the JWT is not accepted by Ably's servers; put a real key of a",
        "   test app in your own env file and run `make dev DEV_ENV=path/to/file.env`.)",
        bar,
    ]
    return "\n".join(lines)


def try_it(base: str, alice: str) -> list[str]:
    """The ready-to-paste curl and ably-js snippet (also printed by `make sam-local`)."""
    return [
        "",
        "  Try it (token for alice, valid 1 h; more: make dev-token SUB=bob ROLES=moderator):",
        "",
        f"    curl -i -H 'Authorization: Bearer {alice}' \\",
        f"      {base}/auth/jwt",
        "",
        f"    curl -i {base}/auth/jwt          # anonymous: public:* subscribe only",
        "",
        "  ably-js (browser or Node):",
        "",
        "    const client = new Ably.Realtime({",
        f"      authUrl: '{base}/auth/jwt',",
        "      authHeaders: { Authorization: 'Bearer ' + sessionToken },  // your app's session token",
        "      // authMethod: 'POST',  // optional: params in a form body instead of the query",
        "    });",
    ]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "9000")))
    p.add_argument("--env-file", default=str(ROOT / "dev" / "dev.env"))
    p.add_argument("--print-only", action="store_true", help="print the banner and exit")
    args = p.parse_args(argv)
    env_file = Path(args.env_file).resolve()
    if not env_file.is_file():
        raise SystemExit(f"dev env file {env_file} not found")

    router = routes()
    if not args.print_only:
        # Build first, so the first request is answered at once (watch builds lazily).
        for name in functions(router):
            subprocess.run(["cargo", "build", "--bin", name], cwd=ROOT, check=True)
    print(banner(args.port, router, env_file), flush=True)
    if args.print_only:
        return 0

    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    cmd = ["cargo", "lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", str(args.port),
           "--disable-cors", "--env-file", str(env_file)]
    print("+ " + shlex.join(cmd), flush=True)
    os.chdir(ROOT)
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
