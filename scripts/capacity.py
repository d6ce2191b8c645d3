#!/usr/bin/env python3
"""The arithmetic of docs/CAPACITY.md: cost and first limit per route at 100 / 10,000 / 1,000,000 req/s.

    python3 scripts/capacity.py                     # the Markdown tables of docs/CAPACITY.md
    python3 scripts/capacity.py --arch x86_64       # x86_64 Lambda prices instead of arm64
    python3 scripts/capacity.py --duration issue-jwt=2 --duration issue-ably-token=40
    python3 scripts/capacity.py --secrets 2 --ttl 60 --ably-rtt 50 --rate 2500

Every input is a named constant below (prices, quotas, durations) or an option, so a reader
can check each one and re-run with their own. Prices: AWS us-east-1 public list prices (see
PRICES_AS_OF); free tiers, taxes, data transfer and CloudWatch Logs are left out (see
docs/CAPACITY.md). Check them against the AWS pricing pages before relying on them.
Plain python3, no dependencies.
"""

from __future__ import annotations

import argparse
import math
import sys

PRICES_AS_OF = "AWS us-east-1 public list prices as of 2025 (check before relying on them)"
SECONDS_PER_MONTH = 30 * 24 * 3600  # 2,592,000: a 30-day month

# --- AWS prices (us-east-1). Lambda duration is tiered per account, region and architecture
# on the monthly GB-s total: (GB-s up to which the price applies, price per GB-s).
LAMBDA_GB_S_TIERS = {
    "arm64": [(7.5e9, 0.0000133334), (18.75e9, 0.0000120001), (math.inf, 0.0000106667)],
    "x86_64": [(6e9, 0.0000166667), (15e9, 0.0000150000), (math.inf, 0.0000133334)],
}
LAMBDA_PER_REQUEST = 0.20 / 1e6
HTTP_API_PER_REQUEST = 1.00 / 1e6  # first 300 million requests/month
HTTP_API_TIER_REQUESTS = 300e6
HTTP_API_PER_REQUEST_OVER = 0.90 / 1e6  # beyond 300 million/month
FUNCTION_URL_PER_REQUEST = 0.0  # no charge of its own: billed as Lambda requests + duration
SECRETS_PER_CALL = 0.05 / 10_000
SECRETS_PER_SECRET_MONTH = 0.40

# --- quotas (defaults; most can be raised)
LAMBDA_CONCURRENCY = 1_000  # concurrent executions per account and region
LAMBDA_RPS_PER_CONCURRENCY = 10  # synchronous invocations/s: 10 x the concurrency quota
LAMBDA_SCALING_ENVS = 1_000  # new execution environments per function ...
LAMBDA_SCALING_PERIOD_S = 10  # ... every 10 s
API_GATEWAY_RPS = 10_000  # account-level throttle per region (burst 5,000), all APIs together
API_GATEWAY_BURST = 5_000
STAGE_THROTTLE_RPS = 100  # template.yaml ThrottlingRateLimit default (burst: ThrottlingBurstLimit 200)
SECRETS_GET_RPS = 10_000  # GetSecretValue per second, per account and region
ABLY_TOKEN_RPS = 50  # ../shared/ably-auth-spec.md: token requests per account, Free tier

# --- the functions (template.yaml: MemorySize 128, Architectures from the Architecture parameter)
MEMORY_MB = 128
FULL_VCPU_MB = 1_769  # Lambda: 1,769 MB = one vCPU; CPU share is proportional to memory
SECRET_TTL_S = 300  # SECRET_CACHE_TTL_SECONDS default
HS256_FORCED_REFRESH_S = 30  # shared/src/caller/hs256.rs FORCED_REFRESH_MIN_AGE
# Warm invocation duration, median, as the Lambda runtime interface emulator reports it
# (docs/PERFORMANCE.md, `make coldstart`; release build, 2-core x86_64). The routes that call
# Ably were measured against a loopback fake Ably, so Ably's real answer time is added:
ABLY_RTT_MS = 20.0  # ASSUMPTION: one in-region HTTPS round trip to Ably (keep-alive)
MEASURED_MS = {"issue-jwt": 0.42, "issue-token-request": 0.42, "issue-ably-token": 0.70}
CALLS_ABLY = {"issue-jwt": False, "issue-token-request": False, "issue-ably-token": True}
# One Ably token request per issued credential? The JWT is presented directly on connect (none);
# a TokenRequest is exchanged by the client SDK at requestToken (one, on the same account);
# issue-ably-token calls requestToken itself (one).
ABLY_TOKEN_REQUESTS = {"issue-jwt": 0, "issue-token-request": 1, "issue-ably-token": 1}
RATES = [100, 10_000, 1_000_000]

# --- Lambda Managed Instances (template ManagedInstances=true; docs/CAPACITY.md, "Managed
# Instances"). Billed per instance-hour, not per request-ms: EC2's on-demand price plus a
# management fee of 15% of it, plus Lambda's per-request charge. The template's defaults give
# each execution environment 2048 MB at 2 GiB per vCPU = 1 vCPU.
LMI_VCPU_HOUR = {  # on-demand EC2 price per vCPU-hour of a 2 GiB/vCPU instance (c7g / c7i .large)
    "arm64": 0.0725 / 2,  # c7g.large, 2 vCPU, 4 GiB: $0.0725/h
    "x86_64": 0.08925 / 2,  # c7i.large, 2 vCPU, 4 GiB: $0.08925/h
}
LMI_MANAGEMENT_FEE = 0.15  # of the EC2 on-demand price
LMI_MIN_ENVIRONMENTS = 3  # per function: Lambda keeps at least three execution environments
LMI_VCPU_PER_ENVIRONMENT = 1  # template default: 2048 MB at ExecutionEnvironmentMemoryGiBPerVCpu 2
HOURS_PER_MONTH = SECONDS_PER_MONTH / 3600
# ASSUMPTION: CPU kept at most this busy on average (Lambda scales on CPU use; headroom for
# traffic that doubles within 5 minutes, which it absorbs without throttling).
LMI_TARGET_UTILIZATION = 0.5
# Measured (`make bench`, docs/PERFORMANCE.md "Concurrent mode"): CPU time of one invocation,
# µs, in concurrent mode (8 workers, current-thread runtime, one vCPU of its own), the
# function's own plus what the loopback Runtime API spent on it (standing in for the Lambda
# agent's Runtime API on the same instance: an ASSUMPTION, the agent is not measurable here).
LMI_FUNCTION_CPU_US = {"issue-jwt": 84.5, "issue-jwt (RS256 callers)": 117.8, "issue-ably-token": 131.1}
LMI_RUNTIME_API_CPU_US = 29.5  # the loopback Runtime API per issue-jwt invocation, same run
LMI_ROUTE_OF = {"issue-jwt": "issue-jwt", "issue-jwt (RS256 callers)": "issue-jwt", "issue-ably-token": "issue-ably-token"}
SENSITIVITY_BILLED_MS = [1, 2, 5, 6]


def durations(overrides: dict[str, float], ably_rtt_ms: float) -> dict[str, float]:
    """Wall-clock ms of one warm invocation in Lambda, per route."""
    out = {r: ms + (ably_rtt_ms if CALLS_ABLY[r] else 0.0) for r, ms in MEASURED_MS.items()}
    out.update(overrides)
    return out


def billed_ms(duration_ms: float) -> int:
    """Lambda bills duration rounded up to the next 1 ms."""
    return max(1, math.ceil(round(duration_ms, 9)))


def lambda_compute_cost(gb_s_month: float, arch: str) -> float:
    cost, floor = 0.0, 0.0
    for ceiling, price in LAMBDA_GB_S_TIERS[arch]:
        if gb_s_month > floor:
            cost += (min(gb_s_month, ceiling) - floor) * price
        floor = ceiling
    return cost


def http_api_cost(requests_month: float) -> float:
    first = min(requests_month, HTTP_API_TIER_REQUESTS)
    return first * HTTP_API_PER_REQUEST + (requests_month - first) * HTTP_API_PER_REQUEST_OVER


def money(x: float) -> str:
    if x >= 100:
        return f"${x:,.0f}"
    if x >= 1:
        return f"${x:,.2f}"
    if x >= 0.01:
        return f"${x:.3f}"
    return f"${x:.3g}" if x else "$0"


def num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:,.1f}".rstrip("0").rstrip(".")
    return f"{x:.3g}"


def times(x: float) -> str:
    return f"{x:,.0f}×" if x >= 10 else f"{x:.2g}×"


def environments(rate: float, duration_ms: float) -> tuple[float, float]:
    """(Little's law concurrency = rate x duration, the floor implied by 10 req/s per environment)."""
    return rate * duration_ms / 1000, rate / LAMBDA_RPS_PER_CONCURRENCY


def row(route: str, rate: float, d_ms: float, a: argparse.Namespace) -> dict:
    b = billed_ms(d_ms)
    per_month = rate * SECONDS_PER_MONTH
    gb_s_month = per_month * b / 1000 * MEMORY_MB / 1024
    compute = lambda_compute_cost(gb_s_month, a.arch)
    lambda_requests = per_month * LAMBDA_PER_REQUEST
    api = http_api_cost(per_month)
    little, floor10 = environments(rate, d_ms)
    envs_low = max(1, math.ceil(little))
    envs_high = max(envs_low, math.ceil(floor10))
    # A warm environment reads each of its secrets once per TTL (lazily, on the first request
    # after expiry): reads/s = environments x secrets / TTL. Costed at the higher count.
    sm_low = envs_low * a.secrets / a.ttl
    sm_high = envs_high * a.secrets / a.ttl
    sm = sm_high * SECONDS_PER_MONTH * SECRETS_PER_CALL + a.secrets * SECRETS_PER_SECRET_MONTH
    via_api = compute + lambda_requests + api + sm
    via_url = compute + lambda_requests + per_month * FUNCTION_URL_PER_REQUEST + sm
    return {
        "rate": rate, "per_month": per_month, "duration": d_ms, "billed": b, "gb_s_month": gb_s_month,
        "compute": compute, "lambda_requests": lambda_requests, "api": api, "sm": sm,
        "via_api": via_api, "via_url": via_url, "api_share": api / via_api,
        "per_m_api": via_api / per_month * 1e6, "per_m_url": via_url / per_month * 1e6,
        "little": little, "envs_low": envs_low, "envs_high": envs_high, "sm_low": sm_low, "sm_high": sm_high,
        "ably_rps": rate * ABLY_TOKEN_REQUESTS[route],
        "quota_needed": max(math.ceil(little), math.ceil(floor10)),
    }


def managed_row(name: str, rate: float, a: argparse.Namespace, standard: dict) -> dict:
    """One Managed Instances row next to the standard-Lambda row of the same route and rate."""
    cpu_us = LMI_FUNCTION_CPU_US[name] + LMI_RUNTIME_API_CPU_US
    busy_vcpus = rate * cpu_us / 1e6
    vcpus = max(LMI_MIN_ENVIRONMENTS * LMI_VCPU_PER_ENVIRONMENT, math.ceil(busy_vcpus / LMI_TARGET_UTILIZATION))
    instance = vcpus * LMI_VCPU_HOUR[a.arch] * HOURS_PER_MONTH
    fee = instance * LMI_MANAGEMENT_FEE
    per_month = rate * SECONDS_PER_MONTH
    requests = per_month * LAMBDA_PER_REQUEST
    total_url = instance + fee + requests + standard["sm"]
    return {"name": name, "rate": rate, "cpu_us": cpu_us, "busy": busy_vcpus, "vcpus": vcpus, "instance": instance,
            "fee": fee, "requests": requests, "total_url": total_url, "total_api": total_url + standard["api"],
            "standard_compute": standard["compute"], "standard_url": standard["via_url"],
            "per_month": per_month}


def thresholds(route: str, d_ms: float, a: argparse.Namespace) -> list[tuple[str, float]]:
    """(limit, request rate at which this route alone reaches it), lowest first."""
    d_s = d_ms / 1000
    sm_envs = SECRETS_GET_RPS * a.ttl / a.secrets  # environments that read 10,000 times/s
    out = [
        (f"HTTP API stage throttle (template ThrottlingRateLimit, default {STAGE_THROTTLE_RPS}/s)", a.stage_throttle),
        (f"API Gateway account throttle {API_GATEWAY_RPS:,}/s", API_GATEWAY_RPS),
        (f"Lambda invocations/s quota (10 × concurrency quota {a.concurrency:,})", a.concurrency * LAMBDA_RPS_PER_CONCURRENCY),
        (f"Lambda concurrency quota {a.concurrency:,} (Little's law)", a.concurrency / d_s),
        (f"Secrets Manager GetSecretValue {SECRETS_GET_RPS:,}/s ({sm_envs:,.0f} environments)",
         min(sm_envs * LAMBDA_RPS_PER_CONCURRENCY, sm_envs / d_s)),
    ]
    if ABLY_TOKEN_REQUESTS[route]:
        tier = " (Free tier)" if a.ably_limit == ABLY_TOKEN_RPS else ""
        out.append((f"Ably token requests {a.ably_limit:,g}/s{tier}", a.ably_limit / ABLY_TOKEN_REQUESTS[route]))
    return sorted(out, key=lambda t: t[1])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Inputs: see the constants at the top of this file and docs/CAPACITY.md.")
    p.add_argument("--arch", choices=sorted(LAMBDA_GB_S_TIERS), default="arm64",
                   help="Lambda architecture whose GB-s price is used (template default arm64)")
    p.add_argument("--duration", action="append", default=[], metavar="ROUTE=MS",
                   help="wall-clock ms of one invocation in Lambda for ROUTE (billed: rounded up to 1 ms); "
                        "default measured under the emulator, + --ably-rtt for issue-ably-token")
    p.add_argument("--ably-rtt", type=float, default=ABLY_RTT_MS, metavar="MS",
                   help=f"assumed answer time of Ably's requestToken (default {ABLY_RTT_MS:g}, in-region)")
    p.add_argument("--secrets", type=int, default=1,
                   help="secrets each environment reads from Secrets Manager (1: the Ably key; 2: + caller HS256 secret)")
    p.add_argument("--ttl", type=float, default=SECRET_TTL_S, metavar="S", help="SECRET_CACHE_TTL_SECONDS (default 300)")
    p.add_argument("--rate", type=float, action="append", metavar="REQ_S",
                   help="request rate(s) to tabulate instead of 100, 10,000, 1,000,000")
    p.add_argument("--concurrency", type=int, default=LAMBDA_CONCURRENCY, help="Lambda concurrency quota (default 1,000)")
    p.add_argument("--stage-throttle", type=float, default=STAGE_THROTTLE_RPS, metavar="REQ_S",
                   help="HTTP API stage throttle, template parameter ThrottlingRateLimit (default 100)")
    p.add_argument("--ably-limit", type=float, default=ABLY_TOKEN_RPS, metavar="REQ_S",
                   help="Ably token requests/s allowed on the account (default 50, Free tier; see your dashboard)")
    a = p.parse_args(argv)
    overrides = {}
    for item in a.duration:
        route, sep, ms = item.partition("=")
        if route not in MEASURED_MS or not sep:
            p.error(f"--duration wants ROUTE=MS with ROUTE one of {', '.join(MEASURED_MS)}")
        overrides[route] = float(ms)
    dur = durations(overrides, a.ably_rtt)
    rates = a.rate or RATES
    rows = {r: [row(r, rate, dur[r], a) for rate in rates] for r in MEASURED_MS}
    tiers = LAMBDA_GB_S_TIERS[a.arch]
    gb_s_price = f"{tiers[0][1]:.10f}".rstrip("0")

    print(f"Inputs: {PRICES_AS_OF}. Lambda {a.arch} {MEMORY_MB} MB = {MEMORY_MB / 1024:g} GB at "
          f"${gb_s_price}/GB-s (first {tiers[0][0] / 1e9:g} bn GB-s/month), ${LAMBDA_PER_REQUEST * 1e6:.2f}/M requests; "
          f"HTTP API ${HTTP_API_PER_REQUEST * 1e6:.2f}/M (${HTTP_API_PER_REQUEST_OVER * 1e6:.2f}/M beyond "
          f"{HTTP_API_TIER_REQUESTS / 1e6:.0f} M/month); Function URL no charge of its own; Secrets Manager "
          f"${SECRETS_PER_CALL * 10_000:.2f}/10,000 calls + ${SECRETS_PER_SECRET_MONTH:.2f}/secret-month, "
          f"{a.secrets} secret(s), TTL {a.ttl:g} s. Durations (ms, wall clock → billed): "
          + ", ".join(f"{r} {dur[r]:g} → {billed_ms(dur[r])}" for r in dur)
          + f" (Ably answer time {a.ably_rtt:g} ms assumed). Month = {SECONDS_PER_MONTH:,} s.\n")

    print("#### Cost per month at a sustained rate\n")
    print("| route | req/s | requests/month | GB-s/month | Lambda compute | Lambda requests | HTTP API "
          "| Secrets Manager | **total, HTTP API** | HTTP API share | **total, Function URL** "
          "| per million: HTTP API / URL |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for route, rs in rows.items():
        for r in rs:
            print(f"| `{route}` | {r['rate']:,.0f} | {num(r['per_month'] / 1e6)} M | {r['gb_s_month']:,.0f} "
                  f"| {money(r['compute'])} | {money(r['lambda_requests'])} | {money(r['api'])} | {money(r['sm'])} "
                  f"| **{money(r['via_api'])}** | {r['api_share']:.0%} | **{money(r['via_url'])}** "
                  f"| {money(r['per_m_api'])} / {money(r['per_m_url'])} |")
    print()

    print("#### Environments, Secrets Manager reads and Ably token requests\n")
    print("| route | req/s | concurrency = rate × duration | environments if ≤ 10 req/s each "
          "| Secrets Manager reads/s (steady) | Ably token requests/s | concurrency quota needed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for route, rs in rows.items():
        for r in rs:
            print(f"| `{route}` | {r['rate']:,.0f} | {num(r['little'])} | {r['envs_high']:,} "
                  f"| {num(r['sm_low'])} – {num(r['sm_high'])} | {r['ably_rps']:,.0f} | {r['quota_needed']:,} |")
    print()

    print("#### Request rate at which each limit is reached (one route alone, default quotas)\n")
    names: list[str] = []
    for route in MEASURED_MS:
        for name, _ in thresholds(route, dur[route], a):
            if name not in names:
                names.append(name)
    print("| limit | " + " | ".join(f"`{r}`" for r in MEASURED_MS) + " |")
    print("|---|" + "---:|" * len(MEASURED_MS))
    for name in names:
        cells = []
        for route in MEASURED_MS:
            at = dict(thresholds(route, dur[route], a)).get(name)
            cells.append(f"{at:,.0f} req/s" if at is not None else "not used")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()

    print("#### Limits reached or exceeded at each rate (lowest first; × = rate / limit)\n")
    print("| req/s | " + " | ".join(f"`{r}`" for r in MEASURED_MS) + " |")
    print("|---:|" + "---|" * len(MEASURED_MS))
    for i, rate in enumerate(rates):
        cells = []
        for route in MEASURED_MS:
            hit = [f"{name.split(' (')[0]} ({'at it' if rate == at else times(rate / at)})"
                   for name, at in thresholds(route, dur[route], a) if rate >= at and not name.startswith("HTTP API stage")]
            cells.append("; ".join(hit) or "none")
        print(f"| {rate:,.0f} | " + " | ".join(cells) + " |")
    print(f"\nNot repeated above: the template's own stage throttle (ThrottlingRateLimit, default "
          f"{a.stage_throttle:g} req/s) is reached at every rate ≥ {a.stage_throttle:g} req/s with Endpoint=HttpApi; "
          "raise it to the expected peak when deploying.\n")

    print("#### Sensitivity: billed duration of the local routes (issue-jwt, issue-token-request)\n")
    print(f"| billed ms | Lambda compute per million | total per million at {rates[-1]:,.0f} req/s, HTTP API / URL "
          + "".join(f"| compute/month at {rate:,.0f} req/s " for rate in rates) + "|")
    print("|---:|---:|---:|" + "---:|" * len(rates))
    for ms in SENSITIVITY_BILLED_MS:
        rs = [row("issue-jwt", rate, ms, a) for rate in rates]
        per_m = rs[-1]
        print(f"| {ms} | {money(per_m['compute'] / per_m['per_month'] * 1e6)} "
              f"| {money(per_m['per_m_api'])} / {money(per_m['per_m_url'])} "
              + "".join(f"| {money(r['compute'])} " for r in rs) + "|")
    print()

    print("#### Lambda Managed Instances next to standard Lambda (10,000 and 1,000,000 req/s)\n")
    print(f"EC2 {a.arch} ${LMI_VCPU_HOUR[a.arch]:.5f} per vCPU-hour + {LMI_MANAGEMENT_FEE:.0%} management fee, "
          f"{HOURS_PER_MONTH:.0f} h/month; at least {LMI_MIN_ENVIRONMENTS} environments × {LMI_VCPU_PER_ENVIRONMENT} vCPU; "
          f"CPU at most {LMI_TARGET_UTILIZATION:.0%} busy (assumed); Runtime API {LMI_RUNTIME_API_CPU_US:g} µs per "
          "invocation (assumed equal to the loopback one). Without API Gateway (Function URL); "
          "add the same HTTP API line to both columns otherwise.\n")
    print("| route | req/s | CPU µs per invocation (function + Runtime API) | busy vCPUs | vCPUs (≥ floor, ≤ 50% busy) "
          "| instances + fee | Lambda requests | **managed, total** | standard: compute | **standard, total** |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in LMI_FUNCTION_CPU_US:
        route = LMI_ROUTE_OF[name]
        for rate in (10_000, 1_000_000):
            standard = row(route, rate, dur[route], a)
            m = managed_row(name, rate, a, standard)
            print(f"| `{name}` | {rate:,.0f} | {m['cpu_us']:.1f} | {m['busy']:.2f} | {m['vcpus']:,} "
                  f"| {money(m['instance'] + m['fee'])} | {money(m['requests'])} | **{money(m['total_url'])}** "
                  f"| {money(m['standard_compute'])} | **{money(m['standard_url'])}** |")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
