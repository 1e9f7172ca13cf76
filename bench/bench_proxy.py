"""Load `POST /predict/label` and compare: the proxy, one service called directly, a naive proxy.

Starts three class services, the proxy and the naive proxy (a new httpx client per
request, as the tutorial did) on free ports, then sends a fixed number of requests at
concurrency 1 and 32 to each and prints p50/p99 latency, requests/s and errors; then the
CPU each request costs (utime + stime from /proc of every process involved, at
concurrency 8), the proxy's floors (its CPU per GET /health and per GET /health/all) and
the latency of one 10,000-row request: proxied, direct (POST /predict, v2 infer in JSON and
in binary tensors) and to the batch API; with `--baseline <checkout>`, one class service
of this checkout against the same service of another (one-row latency, req/s and CPU).
Run: `make bench-proxy` (or `python -m bench.bench_proxy --requests 2000`);
`--scenario client` compares the fan-out's HTTP clients, `--scenario hung` a hung service,
`--scenario stack` uvicorn and granian, `--scenario profile` where a class service's and the
proxy's CPU goes (py-spy, native frames included). The compare scenario ends with a sweep of
concurrency (proxy and direct, alternating) and charts it in
bench/results/proxy-concurrency.png; `--scenario sweep` runs only that.
"""

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import orjson
import uvloop

from bench.bench_overload import overload_scenario, refusal_cost_scenario

# The test harness already starts suite processes on free ports and stops them.
from bench.plots import RESULTS_DIR, plot_concurrency_sweep
from src.proxy.backends import create_session
from tooling.processes import (
    ProcessStarter,
    RunningProcess,
    free_port,
    start_horizontal_suite,
    wait_until_healthy,
)

CLASSES = ("setosa", "versicolor", "virginica")
BODY = {"data": [[6.5, 3.0, 5.5, 1.8]]}
LARGE_ROWS = 10_000
SWEEP_CONCURRENCY = (1, 2, 4, 8, 16, 32, 64)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class LatencyFigures:
    """Requests/s and latency percentiles of anything with `requests`, `seconds`, `latencies`."""

    requests: int
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


@dataclass
class Result(LatencyFigures):
    target: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    def row(self) -> str:
        return (
            f"{self.target:<16} {self.concurrency:>4} {self.requests:>7} "
            f"{self.percentile(0.5):>8.2f} {self.percentile(0.99):>8.2f} "
            f"{self.rps:>9.1f} {self.errors:>6}"
        )


async def _timed_requests(
    session: aiohttp.ClientSession,
    url: str,
    concurrency: int,
    requests: int,
    result: Result,
    method: str = "POST",
) -> None:
    remaining = iter(range(requests))
    body = BODY if method == "POST" else None

    async def worker() -> None:
        for _ in remaining:
            started = time.perf_counter()
            try:
                async with session.request(method, url, json=body) as response:
                    await response.read()
                    if response.status != 200:
                        result.errors += 1
            except aiohttp.ClientError:
                result.errors += 1
            result.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds += time.perf_counter() - started


async def load_interleaved(
    targets: dict[str, str], concurrency: int, requests: int, rounds: int
) -> list[Result]:
    """`requests` per target, sent in `rounds` slices that alternate between the targets.

    This VM's speed drifts (other tenants); alternating slices puts every target
    through the same conditions, so their ratios are not skewed by a slow minute.
    """
    sessions = {
        name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        for name in targets
    }
    results = {name: Result(name, concurrency, requests, 0, 0.0, []) for name in targets}
    try:
        for name, url in targets.items():
            # Warm up connections and code paths before timing.
            for _ in range(20):
                async with sessions[name].post(url, json=BODY) as response:
                    await response.read()
        per_round = [requests // rounds + (i < requests % rounds) for i in range(rounds)]
        for slice_size in per_round:
            for name, url in targets.items():
                await _timed_requests(sessions[name], url, concurrency, slice_size, results[name])
    finally:
        for session in sessions.values():
            await session.close()
    return list(results.values())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class CpuCost:
    target: str
    requests: int
    errors: int
    # Per process name: CPU seconds over the whole measurement.
    seconds_by_process: dict[str, float]

    def per_request_us(self, name: str | None = None) -> float:
        seconds = (
            sum(self.seconds_by_process.values()) if name is None else self.seconds_by_process[name]
        )
        return seconds / self.requests * 1e6


async def cpu_per_request(
    target: str,
    url: str,
    pids: dict[str, int],
    concurrency: int,
    requests: int,
    method: str = "POST",
) -> CpuCost:
    """CPU of every process in `pids` over `requests` requests at `concurrency`.

    CPU time, unlike latency, hardly moves when other tenants load the shared machine:
    it is what each request costs, whoever else is waiting for the cores.
    """
    result = Result(target, concurrency, requests, 0, 0.0, [])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        warm_up = Result(target, 0, 0, 0, 0.0, [])
        await _timed_requests(session, url, concurrency, 50, warm_up, method)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        await _timed_requests(session, url, concurrency, requests, result, method)
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    spent = {name: after[name] - before[name] for name in pids}
    return CpuCost(target, requests, result.errors, spent)


@dataclass(frozen=True)
class LargeRequest:
    url: str
    content: bytes
    headers: dict[str, str]


def large_bodies(rows: int) -> dict[str, tuple[bytes, dict[str, str]]]:
    """One `rows`-row request in each form: {data}, v2 JSON tensor, v2 binary tensor."""
    data = np.array([[6.5, 3.0, 5.5, 1.8], [5.1, 3.5, 1.4, 0.2]] * (rows // 2))
    as_json = {"Content-Type": "application/json"}
    tensor = {"name": "input", "shape": [rows, 4], "datatype": "FP32"}
    header = orjson.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": rows * 4 * 4}}],
            "parameters": {"binary_data_output": True},
        }
    )
    return {
        "rows": (orjson.dumps({"data": data.tolist()}), as_json),
        "v2": (orjson.dumps({"inputs": [{**tensor, "data": data.ravel().tolist()}]}), as_json),
        "binary": (
            header + data.astype("<f4").tobytes(),
            {"Inference-Header-Content-Length": str(len(header))},
        ),
    }


async def large_request_seconds(
    targets: dict[str, LargeRequest], repeats: int
) -> tuple[dict[str, float], int]:
    """Median seconds of one large request per target, the targets alternating."""
    times: dict[str, list[float]] = {name: [] for name in targets}
    errors = 0
    async with aiohttp.ClientSession() as session:
        for attempt in range(repeats + 2):
            for name, target in targets.items():
                started = time.perf_counter()
                async with session.post(
                    target.url, data=target.content, headers=target.headers
                ) as response:
                    await response.read()
                    errors += response.status != 200
                if attempt >= 2:  # the first two are warm-up
                    times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}, errors


def start_batch_api(starter: ProcessStarter, log_dir: Path) -> RunningProcess:
    """The batch API on BENCH_DATABASE_URL, else on a fresh SQLite file, schema migrated."""
    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{log_dir / 'bench.db'}"
    env = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    migrate = starter.start("migrate", ["src.db", "upgrade"], env)
    if migrate.popen.wait(timeout=120) != 0:
        raise RuntimeError(f"python -m src.db upgrade failed:\n{migrate.log()[-2000:]}")
    api = starter.start("api", ["src.api"], env, port=free_port())
    wait_until_healthy(api, timeout=60)
    return api


def one_row_ab(
    targets: dict[str, tuple[str, dict[str, int]]], requests: int, rounds: int
) -> tuple[list[Result], dict[str, CpuCost]]:
    """One-row requests to each target (url, the pids whose CPU it costs), alternating:
    latency and req/s at c=1 and c=32, then CPU per request at c=8 in 2 alternating rounds."""
    urls = {name: url for name, (url, _) in targets.items()}
    results = [
        result
        for concurrency in (1, 32)
        for result in asyncio.run(load_interleaved(urls, concurrency, requests, rounds))
    ]
    runs = [
        asyncio.run(cpu_per_request(name, url, pids, 8, requests // 2))
        for _ in range(2)
        for name, (url, pids) in targets.items()
    ]
    return results, summed_costs(runs)


def summed_costs(runs: list[CpuCost]) -> dict[str, CpuCost]:
    """The rounds of each target's CPU measurement added up, per target."""
    summed: dict[str, CpuCost] = {}
    for run in runs:
        total = summed.setdefault(run.target, CpuCost(run.target, 0, 0, {}))
        total.requests += run.requests
        total.errors += run.errors
        for process, seconds in run.seconds_by_process.items():
            total.seconds_by_process[process] = total.seconds_by_process.get(process, 0) + seconds
    return summed


def print_ab(results: list[Result], cpu: dict[str, CpuCost]) -> None:
    print(
        f"{'target':<16} {'conc':>4} {'reqs':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} "
        f"{'errors':>6}"
    )
    for result in results:
        print(result.row())
    for cost in cpu.values():
        print(f"CPU per request at c=8, {cost.target}: {cost.per_request_us():.0f} us")


def stack_scenario(requests: int, rounds: int) -> int:
    """The HTTP-stack A/B: a class service and the proxy under uvicorn and under granian.

    The same app and settings either way (bench/granian_app.py); both proxies call the
    same three uvicorn services, so a proxy's own CPU is what its stack changes.
    """
    starter = ProcessStarter(Path(tempfile.mkdtemp(prefix="bench-stack-")))
    try:
        services = {
            name: starter.start(name, ["src.services"], {"MODE": name}, port=free_port())
            for name in CLASSES
        }
        granian_service = starter.start(
            "setosa-granian", ["bench.granian_app", "service"], {"MODE": "setosa"}, free_port()
        )
        backend_env = {f"SERVICE_{n.upper()}": p.base_url for n, p in services.items()}
        proxy = starter.start("proxy", ["src.proxy"], backend_env, port=free_port())
        granian_proxy = starter.start(
            "proxy-granian", ["bench.granian_app", "proxy"], backend_env, port=free_port()
        )
        for process in [*services.values(), granian_service, proxy, granian_proxy]:
            wait_until_healthy(process)
        pids = {name: process.popen.pid for name, process in services.items()}
        service_figures = one_row_ab(
            {
                "setosa uvicorn": (
                    services["setosa"].base_url + "/predict",
                    {"setosa": pids["setosa"]},
                ),
                "setosa granian": (
                    granian_service.base_url + "/predict",
                    {"setosa": granian_service.popen.pid},
                ),
            },
            requests,
            rounds,
        )
        proxy_figures = one_row_ab(
            {
                "proxy uvicorn": (
                    proxy.base_url + "/predict/label",
                    {"proxy": proxy.popen.pid, **pids},
                ),
                "proxy granian": (
                    granian_proxy.base_url + "/predict/label",
                    {"proxy": granian_proxy.popen.pid, **pids},
                ),
            },
            requests,
            rounds,
        )
    finally:
        starter.stop_all()
    print(
        f"\nHTTP stacks, one-row requests, {requests} per line in {rounds} alternating "
        f"slices, on {platform.node()}; class service POST /predict:"
    )
    print_ab(*service_figures)
    print("\nproxy POST /predict/label (CPU: the proxy and the three services; the proxy's own):")
    print_ab(*proxy_figures)
    for cost in proxy_figures[1].values():
        print(f"the proxy's own CPU, {cost.target}: {cost.per_request_us('proxy'):.0f} us")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--scenario",
        choices=["compare", "sweep", "client", "hung", "stack", "overload", "refusal", "profile"],
        default="compare",
        help="compare: proxy vs direct vs naive, then the sweep (above); sweep: only the "
        "sweep; client: the fan-out's HTTP clients compared; hung: one service SIGSTOPped; "
        "stack: uvicorn vs granian; overload: c=400, huge bodies, half-open connections "
        "(bench/bench_overload.py); refusal: CPU per refused request (the same); profile: "
        "py-spy samples a class service and the proxy under one-row and 10,000-row requests",
    )
    parser.add_argument(
        "--sweep-requests",
        type=int,
        default=600,
        help="requests per target and concurrency in the sweep (0: no sweep)",
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument(
        "--rounds", type=int, default=10, help="slices per measurement, alternating targets"
    )
    parser.add_argument(
        "--seconds", type=float, default=5, help="hung: seconds per window and round"
    )
    parser.add_argument("--hung-rounds", type=int, default=3, help="hung: rounds")
    parser.add_argument(
        "--overload-seconds", type=float, default=15, help="overload: seconds at c=400"
    )
    parser.add_argument(
        "--overload-rounds", type=int, default=1, help="overload: c=400 runs of each proxy"
    )
    parser.add_argument(
        "--before", default="main", help="overload, refusal: the git ref compared with"
    )
    parser.add_argument(
        "--now-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="overload: a setting of this checkout's suite (repeatable; default: none)",
    )
    parser.add_argument(
        "--cpu-requests", type=int, default=4000, help="requests per CPU measurement (c=8)"
    )
    parser.add_argument(
        "--large-repeats", type=int, default=10, help="timed 10,000-row requests per target"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout to compare one class service with (git worktree add /tmp/base main)",
    )
    args = parser.parse_args()
    if args.scenario == "hung":
        return hung_scenario(args.seconds, args.hung_rounds)
    if args.scenario == "stack":
        return stack_scenario(args.requests, args.rounds)
    if args.scenario == "overload":
        now_settings = dict(item.split("=", 1) for item in args.now_env)
        return overload_scenario(
            args.seconds,
            args.rounds,
            args.overload_seconds,
            args.before,
            args.overload_rounds,
            now_settings,
        )
    if args.scenario == "refusal":
        return refusal_cost_scenario(args.seconds, args.rounds, args.before)
    if args.scenario == "client":
        return client_scenario(args.cpu_requests, args.rounds)
    if args.scenario == "sweep":
        return sweep_scenario(args.sweep_requests, args.rounds)
    if args.scenario == "profile":
        return profile_scenario(args.cpu_requests, args.large_repeats, top=15)

    log_dir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    starter = ProcessStarter(log_dir)
    try:
        services = {
            name: starter.start(name, ["src.services"], {"MODE": name}, port=free_port())
            for name in CLASSES
        }
        backend_env = {f"SERVICE_{n.upper()}": p.base_url for n, p in services.items()}
        proxy = starter.start("proxy", ["src.proxy"], backend_env, port=free_port())
        naive = starter.start("naive", ["bench.naive_proxy"], backend_env, port=free_port())
        baseline = None
        if args.baseline:
            baseline = starter.start(
                "setosa-baseline",
                ["src.services"],
                {"MODE": "setosa"},
                port=free_port(),
                cwd=args.baseline.resolve(),
            )
        for process in [*services.values(), proxy, *([baseline] if baseline else [])]:
            wait_until_healthy(process)
        wait_until_healthy(naive, "/docs")
        api = start_batch_api(starter, log_dir)

        # The naive proxy runs in a block of its own after the other two: its thousands
        # of short-lived connections slowed whatever was measured right after it (the
        # proxy's p50 at concurrency 1 went from about 2.0 to 2.4-3.0 ms when its slices
        # followed the naive proxy's).
        groups = [
            {
                "proxy": proxy.base_url + "/predict/label",
                "direct setosa": services["setosa"].base_url + "/predict",
            },
            {"naive proxy": naive.base_url + "/predict/label"},
        ]
        results = {
            (result.target, concurrency): result
            for concurrency in (1, 32)
            for group in groups
            for result in asyncio.run(
                load_interleaved(group, concurrency, args.requests, args.rounds)
            )
        }
        pids = {name: process.popen.pid for name, process in services.items()}
        # Two rounds each, alternating, so a busy minute on the shared machine hits both.
        cpu_runs = [
            asyncio.run(cpu_per_request(target, url, chosen, 8, args.cpu_requests // 2))
            for _ in range(2)
            for target, url, chosen in (
                ("proxy", proxy.base_url + "/predict/label", {"proxy": proxy.popen.pid, **pids}),
                (
                    "direct setosa",
                    services["setosa"].base_url + "/predict",
                    {"setosa": pids["setosa"]},
                ),
            )
        ]
        # The proxy's floors: what its framework costs with no backend call, and with the
        # three backend calls of a fan-out but no body, no validation and no aggregation.
        floors = {
            path: asyncio.run(
                cpu_per_request(
                    path, proxy.base_url + path, {"proxy": proxy.popen.pid}, 8, 2000, "GET"
                )
            )
            for path in ("/health", "/health/all")
        }
        bodies = large_bodies(LARGE_ROWS)
        setosa = services["setosa"].base_url
        infer = "/v2/models/setosa/infer"
        large_targets = {
            "proxy /predict/label": (proxy.base_url + "/predict/label", "rows"),
            "setosa /predict": (setosa + "/predict", "rows"),
            "setosa v2 infer": (setosa + infer, "v2"),
            "setosa v2 binary infer": (setosa + infer, "binary"),
            "batch API /predict": (api.base_url + "/predict", "rows"),
        }
        if baseline:
            large_targets["baseline setosa /predict"] = (baseline.base_url + "/predict", "rows")
            large_targets["baseline setosa v2 infer"] = (baseline.base_url + infer, "v2")
        large, large_errors = asyncio.run(
            large_request_seconds(
                {
                    name: LargeRequest(url, *bodies[form])
                    for name, (url, form) in large_targets.items()
                },
                args.large_repeats,
            )
        )
        sweep = concurrency_sweep(proxy, services["setosa"], args.sweep_requests, args.rounds)
        service_ab = None
        if baseline:
            service_ab = one_row_ab(
                {
                    "setosa": (setosa + "/predict", {"setosa": pids["setosa"]}),
                    "setosa (baseline)": (
                        baseline.base_url + "/predict",
                        {"setosa (baseline)": baseline.popen.pid},
                    ),
                },
                args.requests,
                args.rounds,
            )
    finally:
        starter.stop_all()

    print(
        f"\nPOST /predict/label, 1 row, {args.requests} requests per line, "
        f"on {platform.node()} ({platform.processor() or platform.machine()}), "
        f"proxy and direct in {args.rounds} alternating slices, then the naive proxy; "
        f"load generator: aiohttp in one process on the same machine"
    )
    print(
        f"{'target':<16} {'conc':>4} {'reqs':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} "
        f"{'errors':>6}"
    )
    for result in results.values():
        print(result.row())

    cpu = summed_costs(cpu_runs)
    proxied, direct = cpu["proxy"], cpu["direct setosa"]
    print(
        f"\nCPU per request (utime+stime from /proc), {proxied.requests} requests at c=8 each, "
        f"in 2 alternating rounds:"
    )
    print(
        f"proxied /predict/label: {proxied.per_request_us():.0f} us over the four processes, "
        + ", ".join(
            f"{name} {proxied.per_request_us(name):.0f}" for name in proxied.seconds_by_process
        )
    )
    print(f"direct /predict to setosa: {direct.per_request_us():.0f} us")
    print(
        f"the proxy's floors, its own CPU per request: GET /health "
        f"{floors['/health'].per_request_us():.0f} us (uvicorn, FastAPI and middleware only), "
        f"GET /health/all {floors['/health/all'].per_request_us():.0f} us (the same and three "
        f"backend GETs); POST /predict/label {proxied.per_request_us('proxy'):.0f} us"
    )
    database = os.environ.get("BENCH_DATABASE_URL", "SQLite")
    print(
        f"\nOne {LARGE_ROWS:,}-row request, median of {args.large_repeats}, the targets "
        f"alternating (batch API on {database.split(':')[0]}):"
    )
    for name, seconds in large.items():
        print(f"{name:<28} {seconds * 1000:8.1f} ms")
    if service_ab:
        ab_results, ab_cpu = service_ab
        print(
            f"\nOne class service, this checkout vs {args.baseline} (one-row POST /predict, "
            f"{args.rounds} alternating slices; CPU at c=8, 2 alternating rounds):"
        )
        print_ab(ab_results, ab_cpu)

    p50_ratio = results["proxy", 1].percentile(0.5) / results["direct setosa", 1].percentile(0.5)
    throughput_ratio = results["proxy", 32].rps / results["naive proxy", 32].rps
    cpu_ratio = proxied.per_request_us() / direct.per_request_us()
    large_ratio = large["proxy /predict/label"] / large["setosa /predict"]
    errors = (
        sum(result.errors for result in results.values())
        + proxied.errors
        + direct.errors
        + sum(floor.errors for floor in floors.values())
        + large_errors
    )
    checks = [
        (
            f"CPU per proxied request is {cpu_ratio:.2f}x a direct call's (target <= 5x)",
            cpu_ratio <= 5,
        ),
        (f"proxy p50 at c=1 is {p50_ratio:.2f}x the direct call (target <= 3x)", p50_ratio <= 3),
        (
            f"proxy req/s at c=32 is {throughput_ratio:.1f}x the naive proxy (target >= 20x)",
            throughput_ratio >= 20,
        ),
        (
            f"a {LARGE_ROWS:,}-row /predict/label is {large_ratio:.2f}x a direct "
            f"{LARGE_ROWS:,}-row /predict (target <= 2x)",
            large_ratio <= 2,
        ),
        *(
            (
                f"{name}, {LARGE_ROWS:,} rows: {large[name] * 1000:.1f} ms (target <= {limit})",
                large[name] * 1000 <= limit,
            )
            for name, limit in (
                ("setosa /predict", 12),
                ("setosa v2 infer", 12),
                ("setosa v2 binary infer", 5),
                ("batch API /predict", 100),
            )
        ),
    ]
    if service_ab:
        ab_results, ab_cpu = service_ab
        by_target = {(result.target, result.concurrency): result for result in ab_results}
        cpu_ab = ab_cpu["setosa"].per_request_us() / ab_cpu["setosa (baseline)"].per_request_us()
        rps_ab = by_target["setosa", 32].rps / by_target["setosa (baseline)", 32].rps
        errors += sum(result.errors for result in ab_results)
        errors += sum(cost.errors for cost in ab_cpu.values())
        checks += [
            (
                f"one-row CPU per request is {cpu_ab:.2f}x the baseline's (target <= 0.5x)",
                cpu_ab <= 0.5,
            ),
            (
                f"one-row req/s at c=32 is {rps_ab:.2f}x the baseline's (target >= 1.5x)",
                rps_ab >= 1.5,
            ),
        ]
    checks.append((f"{errors} errors (target 0)", errors == 0))
    print()
    for text, met in checks:
        print(f"{'MET ' if met else 'MISSED'} {text}")
    report_sweep(sweep, args.sweep_requests, args.rounds)
    return 0 if all(met for _, met in checks) else 1


def concurrency_sweep(proxy, direct, requests: int, rounds: int) -> list[Result]:
    """Proxy and direct call at each SWEEP_CONCURRENCY, alternating slices as above."""
    if not requests:
        return []
    targets = {
        "proxy": proxy.base_url + "/predict/label",
        "direct setosa": direct.base_url + "/predict",
    }
    rounds = min(rounds, requests)
    return [
        result
        for concurrency in SWEEP_CONCURRENCY
        for result in asyncio.run(load_interleaved(targets, concurrency, requests, rounds))
    ]


def report_sweep(sweep: list[Result], requests: int, rounds: int) -> None:
    """Print the sweep's table and draw its chart."""
    if not sweep:
        return
    when = f"{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores"
    print(
        f"\nConcurrency sweep, {requests} requests per line, {rounds} alternating slices ({when})"
    )
    print(
        f"{'target':<16} {'conc':>4} {'reqs':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} "
        f"{'errors':>6}"
    )
    points: dict[str, list] = {}
    for result in sweep:
        print(result.row())
        points.setdefault(result.target, []).append(
            (
                result.concurrency,
                result.rps,
                result.percentile(0.5),
                result.percentile(0.95),
                result.percentile(0.99),
            )
        )
    subtitle = (
        f"{requests} requests per point, 1 row each, load generator on the same machine; {when}"
    )
    path = plot_concurrency_sweep(points, subtitle, RESULTS_DIR / "proxy-concurrency.png")
    print(f"chart: {path}")


def sweep_scenario(requests: int, rounds: int) -> int:
    """Only the concurrency sweep, on processes of its own."""
    starter = ProcessStarter(Path(tempfile.mkdtemp(prefix="bench-proxy-sweep-")))
    try:
        suite = start_horizontal_suite(starter)
        sweep = concurrency_sweep(suite.proxy, suite.services["setosa"], requests, rounds)
    finally:
        starter.stop_all()
    report_sweep(sweep, requests, rounds)
    return 1 if any(result.errors for result in sweep) else 0


def _http_clients() -> dict[str, Callable[[], Any]]:
    """The candidate clients for the fan-out, each a factory of an `async with` client."""
    clients: dict[str, Callable[[], Any]] = {
        "aiohttp session (shipped)": lambda: create_session(8, 15),
        "httpx, own transport": lambda: httpx.AsyncClient(timeout=None),
    }
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:  # requirements-dev.txt has it; report rather than fail without it
        print("httpx over aiohttp: not measured, httpx-aiohttp is not installed")
    else:
        clients["httpx over aiohttp (before)"] = lambda: httpx.AsyncClient(
            transport=AiohttpTransport(), timeout=None
        )
    return clients


async def _client_calls(client: Any, url: str, calls: int) -> None:
    content = orjson.dumps(BODY)
    headers = {"Content-Type": "application/json", "X-Request-ID": "bench"}
    for _ in range(calls):
        if isinstance(client, aiohttp.ClientSession):
            async with client.post(url, data=content, headers=headers) as response:
                await response.read()
        else:
            (await client.post(url, content=content, headers=headers)).read()


def client_scenario(calls: int, rounds: int) -> int:
    """CPU per call of each candidate client: one class service, sequential calls, uvloop.

    The fan-out's client is measured in this process alone (time.process_time), so the
    service's CPU is not in the figure; the clients alternate in `rounds` slices.
    """
    clients = _http_clients()
    spent = dict.fromkeys(clients, 0.0)
    starter = ProcessStarter(Path(tempfile.mkdtemp(prefix="bench-client-")))
    try:
        service = starter.start(
            "setosa", ["src.services"], {"MODE": "setosa", "LOG_LEVEL": "WARNING"}, free_port()
        )
        wait_until_healthy(service)
        url = service.base_url + "/predict"

        async def measure(factory: Callable[[], Any], count: int) -> float:
            async with factory() as client:
                await _client_calls(client, url, 50)
                started = time.process_time()
                await _client_calls(client, url, count)
                return time.process_time() - started

        for _ in range(rounds):
            for name, factory in clients.items():
                spent[name] += uvloop.run(measure(factory, calls // rounds))
    finally:
        starter.stop_all()
    print(
        f"\nCPU per backend call of the fan-out's client, {calls // rounds * rounds} sequential "
        f"1-row POST /predict to one class service per client, in {rounds} alternating "
        f"slices, uvloop (as uvicorn runs the proxy), on {platform.node()}:"
    )
    for name, seconds in spent.items():
        print(f"{name:<30} {seconds / (calls // rounds * rounds) * 1e6:6.0f} us")
    return 0


@dataclass
class Window(LatencyFigures):
    """A time-bounded load window: latencies, statuses and how often the hung service was named."""

    name: str
    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    not_ok: int = 0
    named_hung: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def row(self) -> str:
        return (
            f"{self.name:<34} {self.concurrency:>4} {self.requests:>6} "
            f"{self.percentile(0.5):>8.1f} {self.percentile(0.99):>8.1f} {self.rps:>8.1f} "
            f"{self.not_ok:>6} {self.named_hung:>7}"
        )


async def _load_window(url: str, window: Window, seconds: float, hung: str) -> None:
    """`window.concurrency` workers send `POST /predict/label` for `seconds`."""
    connector = aiohttp.TCPConnector(limit=window.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(url, json=BODY) as response:
                    body = await response.json(content_type=None)
                window.latencies.append(time.perf_counter() - started)
                if response.status != 200:
                    window.not_ok += 1
                elif hung in body["unavailable"]:
                    window.named_hung += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(window.concurrency)))
        window.seconds += time.perf_counter() - started


async def _seconds_until_back(url: str, service: str, concurrency: int, limit: float) -> float:
    """Load until an answer includes `service` again; seconds from now, or inf after `limit`."""
    back_after = float("inf")
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal back_after
            while back_after == float("inf") and time.perf_counter() - started < limit:
                async with session.post(url, json=BODY) as response:
                    body = await response.json(content_type=None)
                if response.status == 200 and service not in body["unavailable"]:
                    back_after = min(back_after, time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return back_after


def hung_scenario(seconds: float, rounds: int) -> int:
    """One class service SIGSTOPped (it accepts connections, never answers), at c=32.

    Default settings (BACKEND_TIMEOUT 2 s, a circuit opens after 5 consecutive failures,
    5 s cool-down). Once: virginica stopped, through a proxy with BREAKER_FAILURE_THRESHOLD=0
    (no breaker, as before it). Then `rounds` times, on the same processes: healthy;
    SIGSTOP and 3 s while the circuit opens; stopped with the circuit open; SIGCONT and
    the seconds until virginica is back in the answers. Alternating healthy and hung
    windows puts both through the same drift of this shared VM's speed.
    """
    hung, concurrency = "virginica", 32
    starter = ProcessStarter(Path(tempfile.mkdtemp(prefix="bench-hung-")))
    try:
        services = {
            name: starter.start(name, ["src.services"], {"MODE": name}, port=free_port())
            for name in CLASSES
        }
        backend_env = {f"SERVICE_{n.upper()}": p.base_url for n, p in services.items()}
        proxy = starter.start("proxy", ["src.proxy"], backend_env, port=free_port())
        unguarded = starter.start(
            "proxy-no-breaker",
            ["src.proxy"],
            {**backend_env, "BREAKER_FAILURE_THRESHOLD": "0"},
            port=free_port(),
        )
        for process in [*services.values(), proxy, unguarded]:
            wait_until_healthy(process)
        url = proxy.base_url + "/predict/label"
        unguarded_url = unguarded.base_url + "/predict/label"

        windows = {
            "no breaker": Window(f"{hung} stopped, no breaker", concurrency),
            "healthy": Window("healthy", concurrency),
            "opening": Window(f"{hung} stopped, circuit opening", concurrency),
            "hung": Window(f"{hung} stopped, circuit open", concurrency),
        }
        asyncio.run(_load_window(url, Window("warm-up", concurrency), 2, hung))
        asyncio.run(_load_window(unguarded_url, Window("warm-up", concurrency), 1, hung))
        services[hung].signal(signal.SIGSTOP)
        try:
            asyncio.run(_load_window(unguarded_url, windows["no breaker"], seconds, hung))
        finally:
            services[hung].signal(signal.SIGCONT)
        back_after = []
        for _ in range(rounds):
            # Back from the last round (or the no-breaker window) before timing healthy.
            asyncio.run(_seconds_until_back(url, hung, concurrency, limit=60))
            asyncio.run(_load_window(url, windows["healthy"], seconds, hung))
            services[hung].signal(signal.SIGSTOP)
            try:
                # Every request in flight waits BACKEND_TIMEOUT before the circuit opens.
                asyncio.run(_load_window(url, windows["opening"], 3, hung))
                asyncio.run(_load_window(url, windows["hung"], seconds, hung))
            finally:
                services[hung].signal(signal.SIGCONT)
            back_after.append(asyncio.run(_seconds_until_back(url, hung, concurrency, limit=60)))
        log = proxy.log()
    finally:
        starter.stop_all()

    print(
        f"\nPOST /predict/label, 1 row, c={concurrency}; {rounds} rounds of: healthy "
        f"{seconds:g} s, SIGSTOP {hung}, opening 3 s, open {seconds:g} s, SIGCONT; "
        f"on {platform.node()} "
        f"({platform.processor() or platform.machine()}); default settings; load generator: "
        f"aiohttp in one process on the same machine"
    )
    print(
        f"{'window':<34} {'conc':>4} {'reqs':>6} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} "
        f"{'non200':>6} {'named ' + hung[:1]:>7}"
    )
    for window in windows.values():
        print(window.row())
    healthy, open_ = windows["healthy"], windows["hung"]
    print(
        f"\n{hung} back in the answers after SIGCONT, per round: "
        f"{', '.join(f'{value:.2f} s' for value in back_after)}; proxy log: "
        f"{log.count(f'circuit of {hung}')} circuit changes, "
        f"{log.count(f'backend {hung} failed (timeout)')} timeouts of {hung}"
    )
    throughput = open_.rps / healthy.rps
    p50 = open_.percentile(0.5) / healthy.percentile(0.5)
    all_named = open_.not_ok == 0 and open_.named_hung == open_.requests
    checks = [
        (f"hung req/s is {throughput:.0%} of healthy (target >= 70%)", throughput >= 0.7),
        (f"hung p50 is {p50:.2f}x healthy (target <= 2x)", p50 <= 2),
        (
            f"hung: {open_.requests - open_.not_ok} of {open_.requests} answers 200, "
            f"{open_.named_hung} naming {hung} (target: all)",
            all_named,
        ),
        (
            f"back at most {max(back_after):.2f} s after SIGCONT (target <= 15 s)",
            max(back_after) <= 15,
        ),
    ]
    print()
    for text, met in checks:
        print(f"{'MET ' if met else 'MISSED'} {text}")
    return 0 if all(met for _, met in checks) else 1


def _collapsed_costs(collapsed: Path, top: int) -> list[tuple[str, float, float]]:
    """(function, self share, inclusive share) of py-spy's collapsed stacks, costliest first."""
    self_samples: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        # py-spy writes "function (file:line)"; the line is dropped so a function counts once.
        names = [frame.rsplit(":", 1)[0] + ")" if ":" in frame else frame for frame in frames]
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + count
        self_samples[names[-1]] = self_samples.get(names[-1], 0) + count
    ranked = sorted(self_samples, key=self_samples.get, reverse=True)[:top]
    return [(name, self_samples[name] / total, inclusive[name] / total) for name in ranked]


def profile_scenario(requests: int, large_repeats: int, top: int) -> int:
    """py-spy samples a class service and the proxy while each serves one-row and
    10,000-row requests; prints each process's costliest functions (self time)."""
    log_dir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    starter = ProcessStarter(log_dir)
    bodies = large_bodies(LARGE_ROWS)
    reports: list[tuple[str, Path]] = []
    try:
        suite = start_horizontal_suite(starter)
        setosa = suite.services["setosa"]
        infer = "/v2/models/setosa/infer"
        workloads = [
            ("setosa POST /predict, 1 row", setosa, "/predict", None, requests),
            ("setosa POST /predict, 10,000 rows", setosa, "/predict", "rows", large_repeats),
            ("setosa v2 infer JSON, 10,000 rows", setosa, infer, "v2", large_repeats),
            ("setosa v2 infer binary, 10,000 rows", setosa, infer, "binary", large_repeats),
            ("proxy /predict/label, 1 row", suite.proxy, "/predict/label", None, requests),
            (
                "proxy /predict/label, 10,000 rows",
                suite.proxy,
                "/predict/label",
                "rows",
                large_repeats,
            ),
        ]
        for name, process, path, form, count in workloads:
            collapsed = log_dir / f"{len(reports)}.txt"
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--pid",
                    str(process.popen.pid),
                    "--rate",
                    "1000",
                    "--format",
                    "raw",
                    # Native frames too: without them the garbage collector's passes show as
                    # the self time of whichever Python line allocated when one started.
                    "--native",
                    "--output",
                    str(collapsed),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)  # py-spy attaches
            url = process.base_url + path
            if form is None:
                asyncio.run(cpu_per_request(name, url, {}, 8, count))
            else:
                content, headers = bodies[form]
                asyncio.run(
                    large_request_seconds({name: LargeRequest(url, content, headers)}, count)
                )
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
            reports.append((name, collapsed))
        for name, collapsed in reports:
            print(f"\n{name}: the {top} costliest functions (self time, share of samples)")
            print(f"{'self':>6} {'incl.':>6}  function")
            for function, own, total in _collapsed_costs(collapsed, top):
                print(f"{own:6.1%} {total:6.1%}  {function}")
    finally:
        starter.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
