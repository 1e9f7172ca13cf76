"""`python -m bench.bench_proxy --scenario overload`: overload and hostile clients.

Starts three class services and the proxy (default settings) of this checkout, and the
same suite of `--before` (a git ref, default `main`, exported with `git archive`), then:
1. c=32, `--seconds` each, alternating this proxy and the one before, `--rounds` times;
2. c=400 for `--overload-seconds`, this proxy and the one before alternating,
   `--overload-rounds` times (the targets are judged on all of this proxy's rounds);
3. a 200 MB body (Content-Length, then chunked) to the proxy, a class service and the batch
   API: seconds to the 413 and the growth of the process's peak RSS (VmHWM);
4. 1,000 half-open connections (headers never finished) to the proxy, while c=8 requests
   go on: the p50 before and during, and the seconds until all are closed.
Load: `hey` (Debian's package; `apt-get install hey`), one row to `POST /predict/label`.
`--now-env KEY=VALUE` (repeatable) runs this checkout's suite with other settings, to
compare them with the defaults of `--before`.

`python -m bench.bench_proxy --scenario refusal`: what one refusal costs. A proxy of this
checkout and one of `--before`, each with `MAX_IN_FLIGHT=1` held by a request to a stub
that answers after a minute and `ADMISSION_WAIT=0`, so that every other request is
refused at once; c=32 `hey` alternating the two: the proxy's CPU per refusal.
"""

import csv
import io
import os
import platform
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from src.db.engine import create_db_engine
from src.db.migrate import upgrade
from src.settings import ProxySettings
from tests.metrics import metric_value
from tests.stub_servers import JsonStubHandler, stub_http_server
from tooling.processes import (
    CLASSES,
    REPO_ROOT,
    ProcessStarter,
    RunningProcess,
    free_port,
    wait_until_healthy,
)

BODY = b'{"data": [[6.5, 3.0, 5.5, 1.8]]}'
HUGE_BYTES = 200 * 1024 * 1024
HALF_OPEN = 1000


@dataclass
class HeyRun:
    """One `hey` run's answers: (seconds, status) per request."""

    label: str
    seconds: float
    answers: list[tuple[float, int]]
    # CPU seconds the measured processes (the proxy and its services) used during the run.
    cpu: float = 0.0
    # CPU seconds `hey` itself used: on the same machine, the load competes for the cores.
    client_cpu: float = 0.0

    def cpu_us_per_answer(self) -> float:
        return self.cpu / max(1, self.count(200)) * 1e6

    def latencies(self, status: int | None = None, other_than: int | None = None) -> list[float]:
        return sorted(
            took
            for took, code in self.answers
            if (status is None or code == status) and (other_than is None or code != other_than)
        )

    def count(self, status: int) -> int:
        return sum(1 for _, code in self.answers if code == status)

    def rps(self, status: int = 200) -> float:
        return self.count(status) / self.seconds

    def row(self) -> str:
        ok = self.latencies(200)
        refused = self.latencies(503)
        other = len(self.answers) - len(ok) - len(refused)
        return (
            f"{self.label:<30} {len(self.answers):>7} {len(ok):>7} {self.rps():>8.0f} "
            f"{_ms(ok, 0.5):>8} {_ms(ok, 0.99):>8} {len(refused):>7} {_ms(refused, 0.99):>9} "
            f"{other:>5} {self.cpu_us_per_answer():>9.0f} {self.client_cpu / self.seconds:>7.0%}"
        )


def _percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))]


def _ms(values: list[float], fraction: float) -> str:
    return f"{_percentile(values, fraction) * 1000:.1f}" if values else "-"


def hey(
    label: str, url: str, concurrency: int, seconds: float, suite: "Suite | None" = None
) -> HeyRun:
    """`hey -z` at `concurrency` for `seconds`; every answer's latency and status from its CSV.

    With `suite`, the CPU its proxy and services used meanwhile: a cost per answer that
    the neighbours' load on a shared machine moves far less than latency.
    """
    from bench.bench_proxy import cpu_seconds  # that module runs this one

    pids = [] if suite is None else [p.popen.pid for p in (suite.proxy, *suite.services.values())]
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    command = [
        "hey",
        "-z",
        f"{seconds}s",
        "-c",
        str(concurrency),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-d",
        BODY.decode(),
        "-o",
        "csv",
        url,
    ]
    client_before = _children_cpu()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    answers = [
        (float(row["response-time"]), int(row["status-code"]))
        for row in csv.DictReader(io.StringIO(output))
    ]
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    return HeyRun(label, seconds, answers, cpu, _children_cpu() - client_before)


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the `hey` runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def export_ref(ref: str) -> Path:
    """The tree of `ref` in a temporary directory (models included), to run as it was."""
    directory = Path(tempfile.mkdtemp(prefix="bench-before-"))
    archive = subprocess.run(
        ["git", "archive", ref], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


class Suite:
    """Three class services, a proxy and the batch API of one source tree, on free ports."""

    def __init__(
        self,
        starter: ProcessStarter,
        tree: Path,
        name: str,
        api: bool,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.starter = starter
        self.tree = tree
        self.settings = settings or {}
        services = {c: self._start(f"{name}-{c}", "src.services", {"MODE": c}) for c in CLASSES}
        env = {f"SERVICE_{c.upper()}": p.base_url for c, p in services.items()}
        self.services = services
        self.proxy = self._start(f"{name}-proxy", "src.proxy", env)
        self.api = None
        if api:
            url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-api-')}/batch.sqlite3"
            engine = create_db_engine(url)
            upgrade(engine)
            engine.dispose()
            self.api = self._start(f"{name}-api", "src.api", {"DATABASE_URL": url})
        for process in [*services.values(), self.proxy, *([self.api] if self.api else [])]:
            wait_until_healthy(process)

    def _start(self, name: str, module: str, env: dict[str, str]) -> RunningProcess:
        env = {**self.settings, **env}
        return self.starter.start(name, [module], env, port=free_port(), cwd=self.tree)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def huge_body(process: RunningProcess, path: str, chunked: bool) -> tuple[float, int, float]:
    """Send up to 200 MB to `path`: (seconds to the answer, its status, peak RSS growth MB)."""
    before = peak_rss_mb(process.popen.pid)
    sock = socket.create_connection(("127.0.0.1", process.port), timeout=30)
    framing = (
        b"Transfer-Encoding: chunked\r\n"
        if chunked
        else f"Content-Length: {HUGE_BYTES}\r\n".encode()
    )
    head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\n"
    head += b"Content-Type: application/json\r\n" + framing + b"\r\n"
    rows = b'{"data": [' + b"[6.5, 3.0, 5.5, 1.8], " * 50_000
    piece = (f"{len(rows):x}\r\n".encode() + rows + b"\r\n") if chunked else rows
    started = time.perf_counter()
    sock.sendall(head)
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    sent, answer = 0, b""
    try:
        while b"\r\n" not in answer and time.perf_counter() - started < 120:
            for _, events in selector.select(timeout=1):
                if events & selectors.EVENT_READ:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError(f"closed without an answer after {sent} bytes")
                    answer += data
                elif sent < HUGE_BYTES:
                    try:
                        sent += sock.send(piece)
                    except BlockingIOError:
                        pass
                    except OSError:  # closed by the server: only its answer is left to read
                        sent = HUGE_BYTES
                    if sent >= HUGE_BYTES:
                        selector.modify(sock, selectors.EVENT_READ)
    finally:
        took = time.perf_counter() - started
        selector.close()
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer else 0
    return took, status, peak_rss_mb(process.popen.pid) - before


def half_open(proxy: RunningProcess, url: str, header_timeout: float) -> list[str]:
    """1,000 connections that never finish their headers, with c=8 requests going on."""
    quiet = hey("c=8, no half-open connections", url, 8, 5)
    sockets = []
    for _ in range(HALF_OPEN):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        sock.sendall(b"POST /predict/label HTTP/1.1\r\nHost: bench\r\nContent-Le")
        sock.setblocking(False)
        sockets.append(sock)
    opened = time.perf_counter()
    during = hey(f"c=8, {HALF_OPEN} half-open", url, 8, min(header_timeout - 1, 3))
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    open_count, last_closed = len(sockets), 0.0
    while open_count and time.perf_counter() - opened < header_timeout + 30:
        for key, _ in selector.select(timeout=0.5):
            try:
                data = key.fileobj.recv(1024)
            except ConnectionResetError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                key.fileobj.close()
                open_count -= 1
                last_closed = time.perf_counter() - opened
    selector.close()
    for sock in sockets:
        sock.close()
    p50_quiet = statistics.median(quiet.latencies(200))
    p50_during = statistics.median(during.latencies(200))
    return [
        quiet.row(),
        during.row(),
        f"half-open: {HALF_OPEN - open_count} of {HALF_OPEN} closed by the proxy, the last "
        f"{last_closed:.2f} s after they were opened (HEADER_TIMEOUT={header_timeout:g}); "
        f"p50 {p50_quiet * 1000:.1f} ms before, {p50_during * 1000:.1f} ms during",
        f"{'MET ' if open_count == 0 and last_closed <= header_timeout + 1 else 'MISSED'} "
        f"all closed within the header timeout (+1 s of timer slack)",
        f"{'MET ' if p50_during <= p50_quiet * 1.2 + 0.002 else 'MISSED'} p50 during "
        f"{p50_during * 1000:.1f} ms vs {p50_quiet * 1000:.1f} ms (kept: within 20% + 2 ms)",
    ]


def overload_scenario(
    seconds: float,
    rounds: int,
    overload_seconds: float,
    before: str,
    overload_rounds: int = 1,
    now_settings: dict[str, str] | None = None,
) -> int:
    if shutil.which("hey") is None:
        print("this scenario needs `hey` (apt-get install hey)", file=sys.stderr)
        return 2
    settings = ProxySettings()
    starter = ProcessStarter(Path(tempfile.mkdtemp(prefix="bench-overload-")))
    lines: list[str] = []
    checks: list[tuple[str, bool]] = []
    try:
        now = Suite(starter, REPO_ROOT, "now", api=True, settings=now_settings)
        then = Suite(starter, export_ref(before), "before", api=False)
        url_now = now.proxy.base_url + "/predict/label"
        url_then = then.proxy.base_url + "/predict/label"
        hey("warm-up", url_now, 32, 2)
        hey("warm-up", url_then, 32, 2)

        # 1. c=32, alternating.
        runs_now, runs_then = [], []
        for index in range(rounds):
            order = [(runs_now, "now"), (runs_then, "before")]
            for runs, which in order if index % 2 == 0 else order[::-1]:
                url = url_now if which == "now" else url_then
                suite = now if which == "now" else then
                runs.append(hey(f"c=32 {which} #{index + 1}", url, 32, seconds, suite))
        c32_rps = statistics.median(run.rps() for run in runs_now)
        c32_then = statistics.median(run.rps() for run in runs_then)
        p50_now = statistics.median(_percentile(r.latencies(200), 0.5) for r in runs_now)
        p50_then = statistics.median(_percentile(r.latencies(200), 0.5) for r in runs_then)
        lines += [run.row() for pair in zip(runs_now, runs_then, strict=True) for run in pair]
        cpu_now = statistics.median(run.cpu_us_per_answer() for run in runs_now)
        cpu_then = statistics.median(run.cpu_us_per_answer() for run in runs_then)
        lines.append(
            f"c=32 CPU of proxy + services per answer (median): {cpu_now:.0f} us now, "
            f"{cpu_then:.0f} us before ({cpu_now / cpu_then - 1:+.1%})"
        )
        checks.append(
            (
                f"c=32: {c32_rps:.0f} req/s vs {c32_then:.0f} before "
                f"({c32_rps / c32_then - 1:+.1%}), p50 {p50_now * 1000:.1f} vs "
                f"{p50_then * 1000:.1f} ms ({p50_now / p50_then - 1:+.1%}) (target: within 5%)",
                c32_rps >= 0.95 * c32_then and p50_now <= 1.05 * p50_then,
            )
        )

        # 2. c=400.
        base = now.proxy.base_url
        degraded_before = _degraded(base)
        short_before = _short_circuited(base)
        overloads, overloads_then = [], []
        for index in range(overload_rounds):
            order = [(overloads, "now"), (overloads_then, "before")]
            for runs, which in order if index % 2 == 0 else order[::-1]:
                url, suite = (url_now, now) if which == "now" else (url_then, then)
                runs.append(hey(f"c=400 {which} #{index + 1}", url, 400, overload_seconds, suite))
        degraded = _degraded(base) - degraded_before
        short = _short_circuited(base) - short_before
        opened = now.proxy.log().count("-> open")
        lines += [run.row() for pair in zip(overloads, overloads_then, strict=True) for run in pair]
        # The rounds' answers together: the percentiles of all of them, the goodput overall.
        overload, overload_then = (
            HeyRun(
                f"c=400 {which}, all rounds",
                sum(run.seconds for run in runs),
                [answer for run in runs for answer in run.answers],
                sum(run.cpu for run in runs),
                sum(run.client_cpu for run in runs),
            )
            for which, runs in (("now", overloads), ("before", overloads_then))
        )
        lines += [overload.row(), overload_then.row()]
        refused = overload.latencies(503)
        answered = overload.latencies(200)
        goodput = overload.rps()
        others = len(overload.answers) - len(refused) - len(answered)
        checks += [
            (
                f"c=400 goodput {goodput:.0f} answers/s = {goodput / c32_rps:.0%} of c=32's "
                f"{c32_rps:.0f} (target >= 90%)",
                goodput >= 0.9 * c32_rps,
            ),
            (
                f"c=400 refusals: {len(refused)}, p99 {_ms(refused, 0.99)} ms, "
                f"{others} answers neither 200 nor 503 (target: p99 <= 50 ms, 0 others)",
                (not refused or _percentile(refused, 0.99) <= 0.05) and others == 0,
            ),
            (
                f"c=400 answered p99 {_ms(answered, 0.99)} ms (target <= 1000 ms)",
                bool(answered) and _percentile(answered, 0.99) <= 1.0,
            ),
            (
                f"c=400: {opened} circuits opened, {short:.0f} calls short-circuited, "
                f"{degraded:.0f} degraded answers (target: 0, 0)",
                opened == 0 and degraded == 0,
            ),
        ]

        # 3. 200 MB bodies.
        targets = [
            ("proxy", now.proxy, "/predict/label"),
            ("proxy v2", now.proxy, "/v2/models/setosa/infer"),
            ("service", now.services["setosa"], "/predict"),
            ("batch API", now.api, "/predict"),
        ]
        for name, process, path in targets:
            for chunked in (False, True):
                took, status, grew = huge_body(process, path, chunked)
                framing = "chunked" if chunked else "Content-Length"
                checks.append(
                    (
                        f"200 MB ({framing}) to {name} {path}: {status} in {took * 1000:.0f} ms, "
                        f"peak RSS +{grew:.1f} MB (target: 413, <= 100 ms, <= 50 MB)",
                        status == 413 and took <= 0.1 and grew <= 50,
                    )
                )

        # 4. Half-open connections.
        half = half_open(now.proxy, url_now, settings.header_timeout)
        lines += half[:3]
        checks += [(text.split(" ", 1)[1].strip(), text.startswith("MET")) for text in half[3:]]
    finally:
        starter.stop_all()

    print(
        f"\nPOST /predict/label, 1 row; load: hey on the same machine ({platform.node()}, "
        f"{os.cpu_count()} CPUs); now = this checkout, before = `{before}`; settings now: "
        f"{now_settings or 'defaults'}; load average at the end {os.getloadavg()}"
    )
    print(
        f"{'run':<30} {'answers':>7} {'200':>7} {'200/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'503':>7} {'503 p99':>9} {'other':>5} {'cpu us/200':>9} {'hey cpu':>7}"
    )
    for line in lines:
        print(line)
    print()
    for text, met in checks:
        print(f"{'MET ' if met else 'MISSED'} {text}")
    return 0 if all(met for _, met in checks) else 1


def _degraded(base: str) -> float:
    return sum(
        metric_value(base, "proxy_degraded_answers_total", answer=answer)
        for answer in ("keyed", "label", "ensemble")
    ) + metric_value(base, "proxy_failed_answers_total")


def _short_circuited(base: str) -> float:
    return sum(
        metric_value(base, "proxy_backend_short_circuited_total", service=c) for c in CLASSES
    )


class _SlowStub(JsonStubHandler):
    """A class service that takes a minute to answer: the one request it holds fills the gate."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (the stdlib's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(60)
        self.send_json(b'{"prediction": [0.9, 0.1], "predictions": [[0.9, 0.1]]}')


def refusal_cost_scenario(seconds: float, rounds: int, before: str) -> int:
    """The proxy's CPU per refused request, this checkout against `before`, alternating."""
    if shutil.which("hey") is None:
        print("this scenario needs `hey` (apt-get install hey)", file=sys.stderr)
        return 2
    from bench.bench_proxy import cpu_seconds

    starter = ProcessStarter(Path(tempfile.mkdtemp(prefix="bench-refusal-")))
    env = {"MAX_IN_FLIGHT": "1", "ADMISSION_WAIT": "0", "BACKEND_TIMEOUT": "120"}
    lines = []
    try:
        with stub_http_server(_SlowStub) as stub_url:
            env["SERVICE_ODD"] = stub_url
            proxies = {
                "now": starter.start("now", ["src.proxy"], env, port=free_port()),
                "before": starter.start(
                    "before", ["src.proxy"], env, port=free_port(), cwd=export_ref(before)
                ),
            }
            holders = []
            for proxy in proxies.values():
                wait_until_healthy(proxy)
                holder = threading.Thread(
                    target=subprocess.run,
                    args=(["curl", "-s", "-m", "90", "-d", BODY, proxy.base_url + "/predict"],),
                    kwargs={"capture_output": True},
                    daemon=True,
                )
                holder.start()
                holders.append(holder)
            time.sleep(1)
            costs: dict[str, list[float]] = {"now": [], "before": []}
            for index in range(rounds):
                order = ["now", "before"] if index % 2 == 0 else ["before", "now"]
                for which in order:
                    proxy = proxies[which]
                    cpu_before = cpu_seconds(proxy.popen.pid)
                    run = hey(
                        f"refused {which} #{index + 1}", proxy.base_url + "/predict", 32, seconds
                    )
                    cpu = cpu_seconds(proxy.popen.pid) - cpu_before
                    refused = run.count(503)
                    per = cpu / max(1, refused) * 1e6
                    costs[which].append(per)
                    refused_ms = run.latencies(503)
                    lines.append(
                        f"{run.label:<22} {refused:>7} refused {refused / seconds:>7.0f}/s "
                        f"p50 {_ms(refused_ms, 0.5):>6} p99 {_ms(refused_ms, 0.99):>6} ms "
                        f"{len(run.answers) - refused:>4} other  CPU {per:>6.0f} us/refusal"
                    )
    finally:
        starter.stop_all()
    print(
        f"\nrefusals, c=32, {seconds}s per run; now = this checkout, before = `{before}`; "
        f"load average at the end {os.getloadavg()}"
    )
    for line in lines:
        print(line)
    now, then = statistics.median(costs["now"]), statistics.median(costs["before"])
    print(
        f"CPU per refusal (median): {now:.0f} us now, {then:.0f} us before ({now / then - 1:+.0%})"
    )
    return 0
