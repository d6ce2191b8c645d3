#!/usr/bin/env python3
"""Measure release-profile settings: binary size, zip size, build time and bench medians.

Each variant is a set of `--config profile.release.*` overrides (nothing in Cargo.toml is
touched), built in its own target directory under --work (default /tmp/profile-matrix) so
the variants never share artifacts and every build is clean:

1. `cargo build --release -p <package>` from nothing: wall time, binary size, deployment
   zip size (`bootstrap`, deflated);
2. optionally (`--bench`) the hot benchmarks with the same settings (criterion's `bench`
   profile inherits `release`; cargo always builds benches with panic=unwind, so the panic
   strategy cannot change these figures), with a shorter measurement time.

    scripts/profile_matrix.py --variants current,abort,s-abort --bench
    scripts/profile_matrix.py --list

The results (JSON, one object per variant) go to <work>/results.json and a table is printed.
It takes long (every variant compiles the whole dependency tree): the figures of
docs/PERFORMANCE.md come from one run of it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_summary  # noqa: E402
import lambda_probe as probe  # noqa: E402

ROOT = probe.ROOT

# name -> profile.release overrides (values in TOML syntax).
BASE = {"opt-level": "3", "lto": '"fat"', "codegen-units": "1", "panic": '"unwind"', "strip": '"symbols"'}
VARIANTS: dict[str, dict[str, str]] = {
    "cargo-default": {"opt-level": "3", "lto": "false", "codegen-units": "16", "panic": '"unwind"', "strip": '"none"'},
    "current": {},
    "abort": {"panic": '"abort"'},
    "thin-abort": {"lto": '"thin"', "panic": '"abort"'},
    "thin-cu16-abort": {"lto": '"thin"', "codegen-units": "16", "panic": '"abort"'},
    "s-abort": {"opt-level": '"s"', "panic": '"abort"'},
    "z-abort": {"opt-level": '"z"', "panic": '"abort"'},
    "s-thin-abort": {"opt-level": '"s"', "lto": '"thin"', "panic": '"abort"'},
    # Size-optimised, except the crates on the request path (ours, the crypto, JSON, base64).
    "s-abort-hot3": {"opt-level": '"s"', "panic": '"abort"', **{f"package.{c}.opt-level": "3" for c in (
        "shared", "aws-lc-rs", "aws-lc-sys", "jsonwebtoken", "serde_json", "base64", "issue-jwt")}},
    # The smallest, with AWS-LC's C code (RSA, ECDSA, SHA, HMAC) still compiled at -O3: the C objects
    # are linked as they are (no cross-language LTO), so their optimisation is the package's own.
    "z-abort-lc3": {"opt-level": '"z"', "panic": '"abort"', "package.aws-lc-sys.opt-level": "3"},
    "z-abort-lc2": {"opt-level": '"z"', "panic": '"abort"', "package.aws-lc-sys.opt-level": "2"},
    "z-abort-lcs": {"opt-level": '"z"', "panic": '"abort"', "package.aws-lc-sys.opt-level": '"s"'},
    # The smallest, except the Rust crates on the request path (ours, JSON, base64, the aws-lc-rs
    # wrapper): what a JWT mint or a TokenRequest spends outside AWS-LC's C code.
    "z-abort-hot3": {"opt-level": '"z"', "panic": '"abort"', **{f"package.{c}.opt-level": "3" for c in (
        "shared", "serde_json", "base64", "aws-lc-rs", "jsonwebtoken", "issue-jwt")}},
    # For reading the binary's composition (nm): the same code as z-abort, symbols kept.
    "z-abort-symbols": {"opt-level": '"z"', "panic": '"abort"', "strip": '"none"'},
}
BENCH_FILTER = ("^(jwt_mint|token_request_sign|route_issue_jwt_hs256|route_issue_jwt_rs256|route_issue_token_request_hs256"
                "|caller_verify_rs256_warm_jwks|caller_verify_es256_warm_jwks)$")
BENCHES = ("engine", "token_request", "routes", "caller")


def config_args(overrides: dict[str, str]) -> list[str]:
    settings = dict(BASE, **overrides)
    args = []
    for k, v in settings.items():
        args += ["--config", f"profile.release.{k}={v}"]
    return args


def run_variant(name: str, package: str, work: Path, bench: bool) -> dict:
    target = work / name
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    cfg = config_args(VARIANTS[name])
    result: dict = {"variant": name, "settings": dict(BASE, **VARIANTS[name]), "load_before": probe.loadavg()}
    started = time.time()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    packages = [x for p in package.split(",") for x in ("-p", p)]
    subprocess.run(["cargo", "build", "--release", "--locked", *packages, *cfg], cwd=ROOT, env=env, check=True)
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["build_seconds"] = round(time.time() - started, 1)
    # CPU time of the build (all rustc/cc processes): on a busy machine wall time says little,
    # CPU time / cores is what a dedicated machine would need at best.
    result["build_cpu_seconds"] = round((cpu_after.ru_utime - cpu_before.ru_utime)
                                        + (cpu_after.ru_stime - cpu_before.ru_stime), 1)
    binary = target / "release" / package.split(",")[0]
    result["binary_bytes"] = binary.stat().st_size
    result["zip_bytes"] = probe.zip_size(binary, work)
    if bench:
        started = time.time()
        benches = [x for b in BENCHES for x in ("--bench", b)]
        subprocess.run(["cargo", "bench", "--locked", "-p", "shared", *benches, *cfg, "--", BENCH_FILTER,
                        "--warm-up-time", "1", "--measurement-time", "3"], cwd=ROOT, env=env, check=True)
        medians = bench_summary.collect(target / "criterion", started)
        result["bench_median_ns"] = {k: round(v["median"], 1) for k, v in sorted(medians.items())}
    result["load_after"] = probe.loadavg()
    return result


def bench_executables(deps: Path) -> list[Path]:
    """The newest engine / token_request / routes bench executables in a deps directory."""
    found = []
    for name in BENCHES:
        candidates = [p for p in deps.glob(f"{name}-*") if p.is_file() and os.access(p, os.X_OK) and not p.suffix]
        if not candidates:
            raise SystemExit(f"no {name} bench executable in {deps}: build the variant with --bench first")
        found.append(max(candidates, key=lambda p: p.stat().st_mtime))
    return found


def interleaved(dirs: dict[str, Path], rounds: int) -> dict[str, dict[str, float]]:
    """Run the variants' bench executables in turn, `rounds` times; median per bench and variant.

    On a shared machine the load changes from minute to minute: alternating the variants
    exposes them to the same conditions, which a one-after-the-other comparison does not."""
    import re
    import statistics
    pattern = re.compile(r"^(\S+)\s*\n?\s*time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", re.M)
    unit = {"ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6}
    samples: dict[str, dict[str, list[float]]] = {v: {} for v in dirs}
    for r in range(rounds):
        for variant, deps in dirs.items():
            for exe in bench_executables(deps):
                out = subprocess.run([str(exe), "--bench", BENCH_FILTER, "--warm-up-time", "1", "--measurement-time", "3",
                                      "--noplot"], capture_output=True, text=True, check=True,
                                     env=dict(os.environ, CRITERION_HOME=str(Path("/tmp") / "criterion-interleaved" / variant)))
                for name, value, u in pattern.findall(out.stdout):
                    samples[variant].setdefault(name, []).append(float(value) * unit[u])
            print(f"round {r + 1}/{rounds}: {variant} done (load {probe.loadavg()})", flush=True)
    return {v: {k: statistics.median(x) for k, x in b.items()} for v, b in samples.items()}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="current,abort,s-abort,z-abort,thin-abort")
    p.add_argument("--package", default="issue-jwt", help="one package, or several separated by commas")
    p.add_argument("--work", type=Path, default=Path("/tmp/profile-matrix"))
    p.add_argument("--bench", action="store_true", help="also run the hot benchmarks per variant")
    p.add_argument("--list", action="store_true")
    p.add_argument("--interleave", default=None, metavar="VARIANT[=DEPS_DIR],...",
                   help="only run the already-built bench executables of these variants in turn (A B C A B C ...)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if args.interleave:
        dirs = {}
        for item in args.interleave.split(","):
            name, _, path = item.partition("=")
            dirs[name] = Path(path) if path else args.work / name / "release" / "deps"
        medians = interleaved(dirs, args.rounds)
        (args.work / "interleaved.json").write_text(json.dumps(medians, indent=2) + "\n")
        names = sorted({k for m in medians.values() for k in m})
        print("bench".ljust(34) + "".join(v.rjust(16) for v in medians))
        for n in names:
            print(n.ljust(34) + "".join(f"{medians[v].get(n, float('nan')) / 1000:13.2f} µs" for v in medians))
        return 0
    if args.list:
        for name, o in VARIANTS.items():
            print(f"{name:18} {json.dumps(dict(BASE, **o))}")
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.work / "results.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; --list shows them")
        print(f"==> {name}", flush=True)
        results[name] = run_variant(name, args.package, args.work, args.bench)
        out.write_text(json.dumps(results, indent=2) + "\n")
    for name, r in results.items():
        benches = " ".join(f"{k}={v / 1000:.2f}µs" for k, v in r.get("bench_median_ns", {}).items())
        print(f"{name:18} build {r['build_seconds']:6.0f} s (CPU {r.get('build_cpu_seconds', 0):5.0f} s)  binary {r['binary_bytes'] / 1e6:6.2f} MB  "
              f"zip {r['zip_bytes'] / 1e6:5.2f} MB  {benches}")
    print(f"details: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
