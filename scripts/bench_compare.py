#!/usr/bin/env python3
"""`make bench-compare`: Rust against what Node.js users run today, same session, same core.

1. `cargo bench -p shared --bench compare` (criterion): `compare_jwt_mint` and
   `compare_token_request`, writing their inputs and one result of each to
   target/bench-compare/rust-fixture.json.
2. `node bench/node/compare.mjs`: npm `jsonwebtoken` signing the same Ably JWT (same header and
   claims, checked) and the `ably` SDK's `auth.createTokenRequest` (same parameters; the same
   MAC for the same nonce, checked; network blocked), warm, single-threaded.
3. A table of medians and the speed-up Node/Rust (how many times less CPU time Rust needs per
   operation on one core), also written to target/bench-compare/summary.{json,md}.

Both sides run pinned to the same CPU (`taskset -c`, default the last CPU) one after the
other, so they share the machine's state; the load average before each is recorded. Nothing
here is a pass/fail test: the figures go into docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_summary  # noqa: E402

PAIRS = [
    # (label, rust bench id, node result name)
    ("Ably JWT, HS256 (jsonwebtoken, secret as string)", "compare_jwt_mint", "jwt_sign"),
    ("Ably JWT, HS256 (jsonwebtoken, secret as KeyObject)", "compare_jwt_mint", "jwt_sign_keyobject"),
    ("TokenRequest (ably createTokenRequest + JSON)", "compare_token_request", "create_token_request"),
    # Not a user operation: the HMAC-SHA256 alone, native on both sides (the floor).
    ("floor: HMAC-SHA256 of the JWT signing input", "compare_hmac_floor_jwt", "hmac_floor_jwt"),
    ("floor: HMAC-SHA256 of the TokenRequest signText", "compare_hmac_floor_token_request", "hmac_floor_token_request"),
]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    return (["taskset", "-c", str(cpu)] + cmd) if cpu is not None else cmd


def human(ns: float) -> str:
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", type=int, default=None, help="CPU to pin both sides to (default: the last one)")
    p.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    p.add_argument("--node-samples", type=int, default=200)
    args = p.parse_args(argv)

    target = bench_summary.target_dir()
    out_dir = target / "bench-compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    fixture = out_dir / "rust-fixture.json"
    node_out = out_dir / "node.json"
    for f in (fixture, node_out):
        f.unlink(missing_ok=True)

    cpu = None
    if not args.no_pin and shutil.which("taskset"):
        cpu = args.cpu if args.cpu is not None else (os.cpu_count() or 1) - 1
    node_modules = ROOT / "tests" / "e2e" / "node_modules"
    if not (node_modules / "ably").is_dir() or not (node_modules / "jsonwebtoken").is_dir():
        raise SystemExit("tests/e2e/node_modules lacks ably or jsonwebtoken: run `make tools`")

    # Build first, so compiling does not share the CPU with the measurements.
    subprocess.run(["cargo", "bench", "-p", "shared", "--bench", "compare", "--no-run"], cwd=ROOT, check=True)

    load = {}
    started = time.time()
    load["rust"] = loadavg()
    print(f"==> Rust (criterion), pinned to CPU {cpu}, load average {load['rust']}", flush=True)
    env = dict(os.environ, BENCH_COMPARE_OUT=str(fixture))
    subprocess.run(pinned(["cargo", "bench", "-p", "shared", "--bench", "compare"], cpu), cwd=ROOT, env=env,
                   check=True)
    load["node"] = loadavg()
    print(f"==> Node.js, pinned to CPU {cpu}, load average {load['node']}", flush=True)
    subprocess.run(pinned(["node", str(ROOT / "bench" / "node" / "compare.mjs"), "--fixture", str(fixture),
                           "--out", str(node_out), "--samples", str(args.node_samples)], cpu), cwd=ROOT, check=True)

    rust = {k: v["median"] for k, v in bench_summary.collect(target / "criterion", started).items()}
    node_doc = json.loads(node_out.read_text())
    node = {k: v["median_ns"] for k, v in node_doc["results"].items()}

    rows = []
    for label, rust_id, node_id in PAIRS:
        if rust_id not in rust or node_id not in node:
            raise SystemExit(f"missing result: {rust_id} (Rust) or {node_id} (Node)")
        rows.append({
            "operation": label,
            "rust_bench": rust_id,
            "rust_median_ns": rust[rust_id],
            "node_bench": node_id,
            "node_median_ns": node[node_id],
            "speedup": node[node_id] / rust[rust_id],
        })
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu_pinned": cpu,
        "load_average_before": load,
        "node": node_doc["node"],
        "jsonwebtoken": node_doc["jsonwebtoken"],
        "ably": node_doc["ably"],
        "rows": rows,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    md = ["| operation | Rust median | Node.js median | Node/Rust |", "|---|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['operation']} | {human(r['rust_median_ns'])} | {human(r['node_median_ns'])} "
                  f"| {r['speedup']:.0f}× |")
    (out_dir / "summary.md").write_text("\n".join(md) + "\n")
    print()
    print(f"Node {node_doc['node']}, jsonwebtoken {node_doc['jsonwebtoken']}, ably {node_doc['ably']}; "
          f"one CPU ({cpu if cpu is not None else 'not pinned'}); load average before: Rust {load['rust']}, "
          f"Node {load['node']}")
    print("\n".join(md))
    worst = min(r["speedup"] for r in rows if not r["operation"].startswith("floor"))
    print(f"\nlowest speed-up {worst:.0f}× (target ≥ 20× per core): {'ok' if worst >= 20 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
