#!/usr/bin/env python3
"""`make deploy`: `sam build`, then `sam deploy` — guided the first time.

The first deploy is guided (`sam deploy --guided`: stack name, region, the template's
parameters, saved to samconfig.toml). A deploy is "first" while samconfig.toml has no
`parameter_overrides` under [default.deploy.parameters]; GUIDED=1 forces the questions again.

The function architecture must be the same for the build and the stack: this script builds
for ARCH when given, else for the Architecture saved in samconfig.toml, else for the
template's default (arm64), and passes the same value to a guided deploy. (A non-guided
deploy keeps the saved parameters: a --parameter-overrides on the command line would replace
them all.)

    make deploy                 # first time: guided; later: build + deploy with the saved answers
    make deploy ARCH=x86_64     # build and deploy x86_64 functions
    make deploy GUIDED=1        # answer the questions again
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DEFAULT_ARCH = "arm64"


def saved_deploy_parameters(config: Path) -> dict | None:
    """[default.deploy.parameters] of samconfig.toml."""
    if not config.is_file():
        return None
    doc = tomllib.loads(config.read_text(encoding="utf-8"))
    return doc.get("default", {}).get("deploy", {}).get("parameters")


def saved_overrides(params: dict | None) -> dict[str, str]:
    """`parameter_overrides` (a string `K=V K="V W"` or a list) as a dict."""
    raw = (params or {}).get("parameter_overrides")
    if not raw:
        return {}
    items = raw if isinstance(raw, list) else shlex.split(raw)
    out = {}
    for item in items:
        if "=" in item:
            k, v = item.split("=", 1)
            out[k] = v
    return out


def run(cmd: list[str]) -> None:
    print("+ " + shlex.join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default=os.environ.get("ARCH") or None, choices=["arm64", "x86_64"])
    p.add_argument("--guided", action="store_true", default=os.environ.get("GUIDED") in ("1", "true", "yes"))
    p.add_argument("--config", default=str(ROOT / "samconfig.toml"))
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)

    params = saved_deploy_parameters(Path(args.config))
    saved = saved_overrides(params)
    guided = args.guided or not saved
    saved_arch = saved.get("Architecture")
    arch = args.arch or saved_arch or TEMPLATE_DEFAULT_ARCH
    if args.arch and saved_arch and args.arch != saved_arch and not guided:
        raise SystemExit(
            f"samconfig.toml deploys Architecture={saved_arch}, but ARCH={args.arch} was asked for: "
            f"run `make deploy GUIDED=1 ARCH={args.arch}` to change it (the build and the stack must agree)"
        )

    sam = str(ROOT / ".tools" / "venv" / "bin" / "sam")
    build = [sam, "build", "--beta-features", "--parameter-overrides", f"Architecture={arch}"]
    deploy = [sam, "deploy"]
    if guided:
        deploy += ["--guided", "--parameter-overrides", f"Architecture={arch}"]
    print(f"==> architecture {arch}; {'guided deploy (answers are saved to samconfig.toml)' if guided else 'deploy with the answers saved in samconfig.toml'}")
    if args.dry_run:
        print("+ " + shlex.join(build))
        print("+ " + shlex.join(deploy))
        return 0
    run(build)
    run(deploy)
    print("\n==> The stack's outputs hold the authUrl of each route (JwtAuthUrl, TokenRequestAuthUrl, AblyTokenAuthUrl, RevokeUrl).")
    print("    If the stack created the key secret, put your Ably key into it once: see the output PutAblyApiKey.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
