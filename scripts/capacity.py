#!/usr/bin/env python3
"""The arithmetic of docs/CAPACITY.md: cost and first limit per route at 100 / 10,000 / 1,000,000 req/s.

    python3 scripts/capacity.py                 # the Markdown tables of docs/CAPACITY.md
    python3 scripts/capacity.py --arch x86_64   # x86_64 Lambda prices instead of arm64
    python3 scripts/capacity.py --duration issue-jwt=2 --duration issue-ably-token=40

Every input is a named constant below (prices, quotas, durations), so a reader can check each
one and re-run with their own. Prices: AWS us-east-1 public list prices as we know them
(see PRICES_AS_OF); free tiers and taxes ignored. They must be checked against the AWS pricing
pages before being relied on.
"""

from __future__ import annotations

import argparse
import math
import sys

PRICES_AS_OF = "AWS us-east-1 public list prices as published in 2025 (to be checked before use)"
SECONDS_PER_MONTH = 30 * 24 * 3600  # 2,592,000: a 30-day month

# --- AWS prices (us-east-1)
LAMBDA_GB_S = {"arm64": 0.0000133334, "x86_64": 0.0000166667}  # first tier (arm64 7.5 bn, x86 6 bn GB-s/month)
LAMBDA_PER_REQUEST = 0.20 / 1e6
HTTP_API_PER_REQUEST = 1.00 / 1e6  # first 300 million requests/month
HTTP_API_PER_REQUEST_OVER_300M = 0.90 / 1e6
SECRETS_PER_CALL = 0.05 / 10_000
SECRETS_PER_SECRET_MONTH = 0.40

# --- quotas (defaults; most can be raised)
LAMBDA_CONCURRENCY = 1_000  # concurrent executions per region (account)
LAMBDA_RPS_PER_CONCURRENCY = 10  # requests/s per function capped at 10 x the concurrency quota
LAMBDA_SCALING = "1,000 new execution environments per function every 10 s"
API_GATEWAY_RPS = 10_000  # account-level throttle per region, burst 5,000
SECRETS_GET_RPS = 10_000  # GetSecretValue (with DescribeSecret) per second per region
ABLY_FREE_TOKEN_RPS = 50  # Ably Free package: token requests per second, account-wide

# --- the functions
MEMORY_GB = 128 / 1024
SECRET_TTL_S = 300  # SECRET_CACHE_TTL_SECONDS default
# Wall-clock duration of one warm invocation in Lambda (ms). Measured under the emulator
# (docs/PERFORMANCE.md: warm durations well under 1 ms) and rounded up to Lambda's 1 ms billing
# granularity; the routes that call Ably add Ably's answer time (assumed: 20 ms in-region).
ABLY_RTT_MS = 20.0
DURATION_MS = {
    "issue-jwt": 1.0,
    "issue-token-request": 1.0,
    "issue-ably-token": 1.0 + ABLY_RTT_MS,
}
RATES = [100, 10_000, 1_000_000]


def billed_ms(duration_ms: float) -> int:
    return max(1, math.ceil(duration_ms))


def money(x: float) -> str:
    if x >= 100:
        return f"${x:,.0f}"
    if x >= 1:
        return f"${x:,.2f}"
    return f"${x:.4f}".rstrip("0").rstrip(".") if x else "$0"


def thresholds(route: str, secrets_per_container: int) -> list[tuple[str, float]]:
    """(limit, request rate at which this route reaches it), lowest first."""
    d_s = DURATION_MS[route] / 1000
    out = [
        (f"Lambda concurrency quota {LAMBDA_CONCURRENCY:,}", LAMBDA_CONCURRENCY / d_s),
        (f"Lambda requests/s quota (10 × concurrency quota)", LAMBDA_CONCURRENCY * LAMBDA_RPS_PER_CONCURRENCY),
        (f"API Gateway account throttle {API_GATEWAY_RPS:,}/s", API_GATEWAY_RPS),
        # containers = rate x duration; reads/s = containers x secrets / TTL
        ("Secrets Manager GetSecretValue 10,000/s", SECRETS_GET_RPS * SECRET_TTL_S / secrets_per_container / d_s),
    ]
    if route in ("issue-ably-token", "issue-token-request"):
        # issue-ably-token calls requestToken itself; a TokenRequest is exchanged by the SDK.
        out.append((f"Ably Free token requests {ABLY_FREE_TOKEN_RPS}/s", ABLY_FREE_TOKEN_RPS))
    return sorted(out, key=lambda t: t[1])


def route_rows(route: str, arch: str, secrets_per_container: int) -> list[dict]:
    rows = []
    for rate in RATES:
        d = DURATION_MS[route]
        b = billed_ms(d)
        per_month = rate * SECONDS_PER_MONTH
        gb_s_per_s = rate * b / 1000 * MEMORY_GB
        compute = gb_s_per_s * SECONDS_PER_MONTH * LAMBDA_GB_S[arch]
        lambda_requests = per_month * LAMBDA_PER_REQUEST
        first = min(per_month, 300e6)
        api = first * HTTP_API_PER_REQUEST + (per_month - first) * HTTP_API_PER_REQUEST_OVER_300M
        concurrency = rate * d / 1000
        containers = max(1, math.ceil(concurrency))
        # Each warm container reads each of its secrets once per TTL.
        sm_reads_per_s = containers * secrets_per_container / SECRET_TTL_S
        sm_calls_month = sm_reads_per_s * SECONDS_PER_MONTH
        sm = sm_calls_month * SECRETS_PER_CALL
        total = compute + lambda_requests + api + sm
        limits = [f"{name}{' (exactly at it)' if rate == at else ''}"
                  for name, at in thresholds(route, secrets_per_container) if rate >= at]
        rows.append({
            "rate": rate, "duration": d, "billed": b, "gb_s_per_s": gb_s_per_s, "compute": compute,
            "lambda_requests": lambda_requests, "api": api, "concurrency": concurrency, "containers": containers,
            "sm_reads_per_s": sm_reads_per_s, "sm": sm, "total": total, "per_million": total / per_month * 1e6,
            "limits": limits,
        })
    return rows


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=sorted(LAMBDA_GB_S), default="arm64")
    p.add_argument("--duration", action="append", default=[], metavar="ROUTE=MS")
    p.add_argument("--secrets", type=int, default=1,
                   help="secrets each container reads from Secrets Manager (1: the Ably key; 2: + caller secret)")
    args = p.parse_args(argv)
    for item in args.duration:
        route, _, ms = item.partition("=")
        DURATION_MS[route] = float(ms)

    print(f"Prices: {PRICES_AS_OF}; Lambda {args.arch} {MEMORY_GB * 1024:.0f} MB at ${LAMBDA_GB_S[args.arch]}/GB-s, "
          f"${LAMBDA_PER_REQUEST * 1e6:.2f}/M requests; HTTP API ${HTTP_API_PER_REQUEST * 1e6:.2f}/M "
          f"(${HTTP_API_PER_REQUEST_OVER_300M * 1e6:.2f}/M over 300 M/month); Secrets Manager "
          f"${SECRETS_PER_CALL * 10_000:.2f}/10,000 calls, {args.secrets} secret(s) per container, TTL {SECRET_TTL_S} s. "
          f"Month = {SECONDS_PER_MONTH:,} s.\n")
    all_rows = {route: route_rows(route, args.arch, args.secrets) for route in DURATION_MS}
    print("#### Cost per month at a sustained rate\n")
    print("| route (duration → billed) | req/s | requests/month | GB-s/month | Lambda compute | Lambda requests "
          "| HTTP API | containers | Secrets Manager reads/s → $/month | total/month | per million |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for route, rows in all_rows.items():
        d = DURATION_MS[route]
        for r in rows:
            per_month = r["rate"] * SECONDS_PER_MONTH
            print(f"| `{route}` ({d:g} → {r['billed']} ms) | {r['rate']:,} | {per_month:,.3g} "
                  f"| {r['gb_s_per_s'] * SECONDS_PER_MONTH:,.0f} | {money(r['compute'])} | {money(r['lambda_requests'])} "
                  f"| {money(r['api'])} | {r['containers']:,} | {r['sm_reads_per_s']:.3g} → {money(r['sm'])} "
                  f"| {money(r['total'])} | {money(r['per_million'])} |")
    print()
    print("#### Where each limit is reached (request rate, per route)\n")
    names = []
    for route in DURATION_MS:
        for name, _ in thresholds(route, args.secrets):
            if name not in names:
                names.append(name)
    print("| limit | " + " | ".join(f"`{r}`" for r in DURATION_MS) + " |")
    print("|---|" + "---:|" * len(DURATION_MS))
    for name in names:
        cells = []
        for route in DURATION_MS:
            at = dict(thresholds(route, args.secrets)).get(name)
            cells.append(f"{at:,.0f} req/s" if at is not None else "n/a")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    print("#### Limits reached at each rate (lowest first)\n")
    print("| req/s | " + " | ".join(f"`{r}`" for r in DURATION_MS) + " |")
    print("|---:|" + "---|" * len(DURATION_MS))
    for i, rate in enumerate(RATES):
        print(f"| {rate:,} | " + " | ".join("; ".join(all_rows[r][i]["limits"]) or "none" for r in DURATION_MS) + " |")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
