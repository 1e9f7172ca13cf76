"""Steady load on the proxy from a background thread, answers sorted as ok, degraded or failed.

`concurrency` clients each send POST /predict/label, one after the other, until stopped.
An answer is degraded when it is a 200 that names an unavailable class service, failed
when it is anything but a 200 (or no answer at all). Used by the replica tests, the swarm
tier and bench/bench_swarm.py. After `expect_version(service, version)`, an answer to a
request sent since that names another version of `service` is counted `stale` (rollouts).
"""

import asyncio
import threading
import time
from dataclasses import dataclass, field

import aiohttp

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.5, 3.0, 5.5, 1.8]]


@dataclass
class Counts:
    ok: int = 0
    degraded: int = 0
    failed: int = 0
    stale: int = 0
    # The first few problems, to say what went wrong.
    problems: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + self.degraded + self.failed

    def __sub__(self, earlier: "Counts") -> "Counts":
        return Counts(
            self.ok - earlier.ok,
            self.degraded - earlier.degraded,
            self.failed - earlier.failed,
            stale=self.stale - earlier.stale,
        )

    def share(self, part: int) -> float:
        return part / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (
            f"{self.total} requests: {self.failed} failed, {self.degraded} degraded "
            f"({100 * self.share(self.degraded):.3f}%)"
            + (f", {self.stale} naming an older version" if self.stale else "")
        )


class Load:
    """`with Load(url, 32) as load:` ... `load.counts()` at any time; stops on exit."""

    def __init__(self, proxy_url: str, concurrency: int, timeout: float = 30) -> None:
        self.url = proxy_url.rstrip("/") + "/predict/label"
        self.concurrency = concurrency
        self.timeout = timeout
        self._counts = Counts()
        # (service, version, since): answers to requests sent after `since` must name it.
        self._expected: tuple[str, str, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> Counts:
        self._stop.set()
        self._thread.join(self.timeout + 10)
        return self.counts()

    def counts(self) -> Counts:
        counts = self._counts
        return Counts(
            counts.ok,
            counts.degraded,
            counts.failed,
            stale=counts.stale,
            problems=list(counts.problems),
        )

    def expect_version(self, service: str, version: str) -> None:
        """From now on, every answer must name `version` as `service`'s model version."""
        self._expected = (service, version, time.monotonic())

    def wait_for_requests(self, count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.counts().total < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} requests in {timeout}s: {self.counts()}")
            time.sleep(0.1)

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self._client(session) for _ in range(self.concurrency)))

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                async with session.post(self.url, json={"data": ROWS}) as response:
                    body = await response.json(content_type=None)
                if response.status != 200:
                    self._failed(f"HTTP {response.status}: {body}")
                elif body.get("unavailable"):
                    self._counts.degraded += 1
                    self._note(f"degraded: {body['unavailable']}")
                else:
                    self._counts.ok += 1
                    self._check_version(body, sent)
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                self._failed(f"{type(error).__name__}: {error}")

    def _check_version(self, body: dict, sent: float) -> None:
        if self._expected is None:
            return
        service, version, since = self._expected
        named = body.get("model_versions", {}).get(service)
        if sent > since and named != version:
            self._counts.stale += 1
            self._note(f"{service} version {named} after the load of {version}")

    def _failed(self, problem: str) -> None:
        self._counts.failed += 1
        self._note(problem)

    def _note(self, problem: str) -> None:
        if len(self._counts.problems) < 20:
            self._counts.problems.append(problem)
