"""`python -m bench.bench_rollout`: a new model version rolled out under load, in figures.

The suite runs as processes (proxy and three class services) on a copy of models/. While
`--concurrency` clients send one-row `POST /predict/label` to the proxy, setosa gets a
version 2 through the proxy's repository API (`POST /v2/repository/models/setosa/load`).
Printed per round: requests, failed, degraded, answers naming the old version after the
load returned (stale), the load call's time, and throughput before, in the second after,
and after the load. `--rounds` repeats it on a fresh suite.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from tooling.load import Load
from tooling.processes import REPO_ROOT, ProcessStarter, start_horizontal_suite

TOKEN = "bench-rollout-token"


def throughput(load: Load, seconds: float) -> float:
    start = load.counts().total
    time.sleep(seconds)
    return (load.counts().total - start) / seconds


def one_round(concurrency: int, steady_seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder) / "models"
        shutil.copytree(REPO_ROOT / "models", repository)
        starter = ProcessStarter(Path(folder))
        try:
            suite = start_horizontal_suite(
                starter,
                {"ADMIN_TOKEN": TOKEN},
                service_env=lambda _: {"MODEL_REPOSITORY": str(repository), "ADMIN_TOKEN": TOKEN},
            )
            url = suite.proxy.base_url
            with Load(url, concurrency) as load:
                load.wait_for_requests(concurrency * 5)
                before = throughput(load, steady_seconds)
                (repository / "setosa" / "2").mkdir()
                shutil.copy(
                    repository / "setosa" / "1" / "model.onnx",
                    repository / "setosa" / "2" / "model.onnx",
                )
                started = time.perf_counter()
                answer = httpx.post(
                    url + "/v2/repository/models/setosa/load",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=60,
                )
                load_seconds = time.perf_counter() - started
                answer.raise_for_status()
                load.expect_version("setosa", "2")
                during = throughput(load, 1.0)
                after = throughput(load, steady_seconds)
                counts = load.stop()
        finally:
            starter.stop_all()
    return {
        "requests": counts.total,
        "failed": counts.failed,
        "degraded": counts.degraded,
        "stale": counts.stale,
        "load_ms": load_seconds * 1000,
        "before": before,
        "during": during,
        "after": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steady-seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"rollout of setosa version 2 at c={args.concurrency}, {args.rounds} round(s)")
    print(
        f"{'round':>5} {'requests':>9} {'failed':>7} {'degraded':>9} {'stale':>6} "
        f"{'load call':>10} {'req/s before':>13} {'1 s after':>10} {'later':>8}"
    )
    for number in range(1, args.rounds + 1):
        figures = one_round(args.concurrency, args.steady_seconds)
        print(
            f"{number:>5} {figures['requests']:>9,} {figures['failed']:>7} "
            f"{figures['degraded']:>9} {figures['stale']:>6} {figures['load_ms']:>8.0f}ms "
            f"{figures['before']:>13.0f} {figures['during']:>10.0f} {figures['after']:>8.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
