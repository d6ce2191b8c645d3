#!/usr/bin/env python3
"""Run the cargo-fuzz targets in fuzz/ one after the other and report what they did.

    python3 scripts/fuzz.py --seconds 60 [TARGET ...]      (what `make fuzz` runs)

Each target runs for --seconds under libFuzzer (one process, `nice`), starting from its
working corpus fuzz/corpus/<target>/ (git-ignored, grows across runs) plus the committed
fuzz/seeds/<target>/ and fuzz/regressions/<target>/. The build is release with debug
assertions and overflow checks, without a sanitizer (the project's code is safe Rust; a
panic or a broken assertion is what we look for).

The stable toolchain runs cargo fuzz's nightly flags with RUSTC_BOOTSTRAP=1. cargo-fuzz is
installed into .tools/cargo (`make fuzz` does it). A crash leaves its input in
fuzz/artifacts/<target>/; the summary says how to turn it into a regression input.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"
TARGETS = ["params", "capability", "policy", "caller_token", "request", "event"]
BUILD_FLAGS = ["-O", "-a", "-s", "none"]


def cargo_fuzz_env():
    env = dict(os.environ)
    env["RUSTC_BOOTSTRAP"] = "1"
    env["PATH"] = f"{ROOT / '.tools' / 'cargo' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def stat(text, name):
    m = re.search(rf"stat::{name}:\s+(\d+)", text)
    return int(m.group(1)) if m else None


def run_target(target, seconds, env):
    corpus = FUZZ / "corpus" / target
    corpus.mkdir(parents=True, exist_ok=True)
    extra = [str(d) for d in (FUZZ / "seeds" / target, FUZZ / "regressions" / target) if d.is_dir()]
    cmd = ["nice", "-n", "10", "cargo", "fuzz", "run", *BUILD_FLAGS, target, str(corpus), *extra, "--",
           f"-max_total_time={seconds}", "-print_final_stats=1", "-timeout=10", "-rss_limit_mb=2048",
           "-max_len=8192"]
    print(f"==> fuzz {target} for {seconds} s: {' '.join(cmd[3:])}", flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace")
    elapsed = time.monotonic() - started
    out = proc.stdout
    log = FUZZ / "corpus" / f"{target}.log"
    log.write_text(out)
    crash = re.findall(r"Test unit written to (\S+)", out)
    result = {
        "target": target,
        "seconds": round(elapsed),
        "executions": stat(out, "number_of_executed_units"),
        "exec_per_s": stat(out, "average_exec_per_sec"),
        "new_units": stat(out, "new_units_added"),
        "peak_rss_mb": stat(out, "peak_rss_mb"),
        "corpus": len(list(corpus.iterdir())),
        "crash": crash[0] if crash else None,
        "ok": proc.returncode == 0 and not crash,
    }
    if not result["ok"]:
        tail = "\n".join(out.splitlines()[-60:])
        print(tail, flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("targets", nargs="*", default=TARGETS)
    args = parser.parse_args()
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        sys.exit(f"unknown fuzz target(s) {unknown}; the targets are {TARGETS}")
    if shutil.which("cargo-fuzz", path=cargo_fuzz_env()["PATH"]) is None:
        sys.exit("cargo-fuzz is not installed: run `make fuzz` (installs it into .tools/cargo)")
    env = cargo_fuzz_env()
    print("==> building the fuzz targets (instrumented, fuzz/target)", flush=True)
    subprocess.run(["nice", "-n", "10", "cargo", "fuzz", "build", *BUILD_FLAGS], cwd=ROOT, env=env, check=True)
    results = [run_target(t, args.seconds, env) for t in args.targets]

    print("\ntarget        seconds  executions    exec/s  new units  corpus  peak RSS  result")
    for r in results:
        print(f"{r['target']:13} {r['seconds']:7} {r['executions'] or 0:11} {r['exec_per_s'] or 0:9} "
              f"{r['new_units'] or 0:10} {r['corpus']:7} {str(r['peak_rss_mb'] or '?') + ' MB':>9}  "
              f"{'ok' if r['ok'] else 'CRASH ' + str(r['crash'])}")
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        if r["crash"]:
            print(f"\n{r['target']} crashed on {r['crash']}. Reproduce:\n"
                  f"  RUSTC_BOOTSTRAP=1 cargo fuzz run {' '.join(BUILD_FLAGS)} {r['target']} {r['crash']}\n"
                  f"Fix it, then keep the input as a regression test:\n"
                  f"  cp {r['crash']} fuzz/regressions/{r['target']}/<what-it-found>\n"
                  f"(tests/tests/fuzz_regressions.rs replays every file there; `make fuzz-regressions`).")
    total = sum(r["executions"] or 0 for r in results)
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed ({total} executions in all)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
