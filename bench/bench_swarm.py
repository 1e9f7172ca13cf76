"""The suite on a single-node Docker Swarm under load: what replacing or losing a replica costs.

Run: `make bench-swarm` (BENCH_ARGS="--rounds 3"). Deploys a stack of its own (two
replicas of each class service, two jobs; tooling/swarm_stack.py), then per round, with
`--concurrency` clients on the proxy's /predict/label:
  - a rolling update of service_setosa to another image tag: failed and degraded answers;
  - one setosa replica killed: failed and degraded answers, seconds until its
    replacement takes calls;
and once: the share of calls per virginica replica under steady load, and how a backlog
of `--job-items` is split between the two jobs. Removes the stack at the end (and leaves
the swarm when nothing else runs on it). Prints the figures; asserts nothing.
"""

import argparse
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path

from tooling import swarm_scenarios as scenarios
from tooling.compose_project import docker_engine_problem
from tooling.swarm_scenarios import SERVICE_IMAGE
from tooling.swarm_stack import IMAGE_TAG, SwarmStack, stack_settings


def describe(name: str, outcome: scenarios.Outcome, seconds_label: str) -> str:
    counts = outcome.counts
    failures = ", ".join(f"{key} {value:g}" for key, value in outcome.backend_failures.items())
    return (
        f"  {name:<16} {counts.total:>6} requests  {counts.failed:>3} failed  "
        f"{counts.degraded:>4} degraded ({100 * counts.share(counts.degraded):.3f}%)  "
        f"{seconds_label} {outcome.seconds:.1f}s  backend failures: {failures or 'none'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--settle", type=int, default=1500, help="requests after each event")
    parser.add_argument("--job-items", type=int, default=100_000)
    args = parser.parse_args()
    if problem := docker_engine_problem():
        print(f"bench_swarm: {problem}")
        return 2
    print(
        f"bench_swarm {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{platform.node()} ({platform.processor() or platform.machine()}), "
        f"concurrency {args.concurrency}, {args.settle} requests after each event"
    )
    with tempfile.TemporaryDirectory() as directory:
        stack = SwarmStack(
            name=f"mlsp-bench-{secrets.token_hex(3)}",
            directory=Path(directory),
            settings=stack_settings(),
        )
        try:
            started = time.monotonic()
            stack.start()
            print(f"stack deployed and ready in {time.monotonic() - started:.0f}s")
            images = [f"{SERVICE_IMAGE}:{IMAGE_TAG}-update", f"{SERVICE_IMAGE}:{IMAGE_TAG}"]
            stack.docker("tag", images[1], images[0])
            for round_number in range(1, args.rounds + 1):
                print(f"round {round_number}")
                image = images[(round_number - 1) % 2]
                update = scenarios.rolling_update(
                    stack, "service_setosa", image, args.concurrency, args.settle
                )
                print(describe("rolling update", update, "update took"))
                lost = scenarios.kill_replica(
                    stack, "service_setosa", args.concurrency, args.settle
                )
                print(describe("lost replica", lost, "replacement took calls after"))
            shares = scenarios.share_of_calls(stack, "service_virginica", args.concurrency, 2000)
            print(
                "share of calls per virginica replica: "
                + ", ".join(f"{address} {100 * share:.1f}%" for address, share in shares.items())
            )
            split = scenarios.job_split(stack, args.job_items)
            print(
                f"backlog of {args.job_items} items between the jobs: "
                + ", ".join(
                    f"{replica} {int(scored)} ({100 * scored / args.job_items:.1f}%)"
                    for replica, scored in split.items()
                )
                + f"; sum {int(sum(split.values()))}"
            )
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
