"""`Backends` over several replicas of one service: real HTTP servers on 127.0.0.2 and
127.0.0.3 behind one name, which a resolver of the test's own resolves."""

import asyncio
import contextlib
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

import pytest

from src.proxy.backends import Backends, create_session
from src.proxy.breaker import CircuitState
from tests.stub_servers import JsonStubHandler

REPLICA_HOSTS = ("127.0.0.2", "127.0.0.3")


class _Handler(JsonStubHandler):
    """Answers every GET with 200 and the address it was reached on."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the stdlib's naming)
        body = json.dumps({"replica": self.server.server_address[0]}).encode()
        self.send_json(body)


def _port_free_on_both() -> int:
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind((REPLICA_HOSTS[0], 0))
            port = probe.getsockname()[1]
        with socket.socket() as other:
            if other.connect_ex((REPLICA_HOSTS[1], port)) != 0:
                return port
    raise RuntimeError("no port free on both loopback addresses")


class _Server(ThreadingHTTPServer):
    """Remembers its connections, so stopping it ends the kept-alive ones too, as a kill does."""

    daemon_threads = True

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.connections: set[socket.socket] = set()

    def get_request(self):
        connection, address = super().get_request()
        self.connections.add(connection)
        return connection, address

    def handle_error(self, request, client_address) -> None:
        pass  # a connection cut by stop() mid-answer, on purpose

    def server_close(self) -> None:
        super().server_close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Replicas:
    """Two servers on one port of two loopback addresses; each can be stopped."""

    def __init__(self) -> None:
        self.port = _port_free_on_both()
        self.servers = {host: self._serve(host) for host in REPLICA_HOSTS}

    def _serve(self, host: str) -> ThreadingHTTPServer:
        server = _Server((host, self.port), _Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def stop(self, host: str) -> None:
        server = self.servers.pop(host)
        server.shutdown()
        server.server_close()

    def close(self) -> None:
        for host in list(self.servers):
            self.stop(host)


@contextmanager
def two_replicas() -> Iterator[Replicas]:
    replicas = Replicas()
    try:
        yield replicas
    finally:
        replicas.close()


class Names:
    """A resolver whose answers the test changes, as DNS changes when tasks come and go."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups += 1
        if host != "classifier":
            raise OSError(f"unknown host {host}")
        if not self.addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.addresses)


def backends_for(session, port: int, names: Names, **options) -> Backends:
    return Backends(
        {"svc": f"http://classifier:{port}"},
        session,
        timeout=2.0,
        resolver=names,
        failure_threshold=3,
        cooldown=30,
        **options,
    )


async def answered_by(backends: Backends, calls: int) -> Counter:
    results = [await backends.call_one("svc", "GET", "/health") for _ in range(calls)]
    return Counter(result.body["replica"] if result.ok else result.error for result in results)


def test_calls_are_spread_over_every_address_of_the_name():
    async def scenario() -> Counter:
        with two_replicas() as replicas:
            async with create_session(max_connections=8, keepalive_seconds=5) as session:
                names = Names(list(REPLICA_HOSTS))
                return await answered_by(backends_for(session, replicas.port, names), 20)

    assert asyncio.run(scenario()) == {"127.0.0.2": 10, "127.0.0.3": 10}


def test_replicas_that_come_and_go_are_noticed_by_re_resolving():
    async def scenario() -> tuple[Counter, Counter, Counter]:
        with two_replicas() as replicas:
            async with create_session(max_connections=8, keepalive_seconds=5) as session:
                names = Names(["127.0.0.2"])
                backends = backends_for(session, replicas.port, names, resolve_interval=0.1)
                alone = await answered_by(backends, 6)
                names.addresses = list(REPLICA_HOSTS)
                await asyncio.sleep(0.15)
                await answered_by(backends, 1)  # starts the lookup in the background
                await asyncio.sleep(0.05)
                both = await answered_by(backends, 10)
                names.addresses = ["127.0.0.3"]
                await asyncio.sleep(0.15)
                await answered_by(backends, 1)
                await asyncio.sleep(0.05)
                return alone, both, await answered_by(backends, 6)

    alone, both, other = asyncio.run(scenario())
    assert alone == {"127.0.0.2": 6}
    assert both == {"127.0.0.2": 5, "127.0.0.3": 5}
    assert other == {"127.0.0.3": 6}


def test_a_stopped_replica_costs_no_failure_and_leaves_the_circuit_closed():
    async def scenario():
        with two_replicas() as replicas:
            async with create_session(max_connections=8, keepalive_seconds=5) as session:
                names = Names(list(REPLICA_HOSTS))
                backends = backends_for(session, replicas.port, names, ejection_seconds=30)
                await answered_by(backends, 4)
                replicas.stop("127.0.0.2")
                # Refused: each call that picks it is made again on the other replica,
                # which then takes every call while the stopped one is ejected.
                answers = await answered_by(backends, 20)
                state = backends.breakers["svc"].state
                ejected = [r.address for r in backends.replicas["svc"].replicas if r.ejected_until]
                return answers, state, ejected

    answers, state, ejected = asyncio.run(scenario())
    assert answers == {"127.0.0.3": 20}
    assert state is CircuitState.CLOSED
    assert ejected == [f"127.0.0.2:{ejected[0].rsplit(':', 1)[1]}"]


def test_the_circuit_opens_when_every_replica_fails():
    async def scenario():
        with two_replicas() as replicas:
            async with create_session(max_connections=8, keepalive_seconds=5) as session:
                names = Names(list(REPLICA_HOSTS))
                backends = backends_for(session, replicas.port, names)
                await answered_by(backends, 2)
                replicas.close()
                answers = await answered_by(backends, 10)
                return answers, backends.breakers["svc"].state

    answers, state = asyncio.run(scenario())
    assert state is CircuitState.OPEN
    assert answers["unreachable"] >= 3
    assert answers["circuit_open"] >= 1
    assert set(answers) == {"unreachable", "circuit_open"}


def test_a_name_that_does_not_resolve_yet_is_unreachable_then_found():
    async def scenario():
        with two_replicas() as replicas:
            async with create_session(max_connections=8, keepalive_seconds=5) as session:
                names = Names([])
                backends = backends_for(session, replicas.port, names, resolve_interval=0.1)
                before = await backends.call_one("svc", "GET", "/health")
                names.addresses = ["127.0.0.3"]
                await asyncio.sleep(0.15)
                await backends.call_one("svc", "GET", "/health")
                await asyncio.sleep(0.05)
                return before, await answered_by(backends, 3)

    before, after = asyncio.run(scenario())
    assert before.error == "unreachable"
    assert "classifier" in before.detail
    assert after == {"127.0.0.3": 3}


@pytest.mark.parametrize("separator", [",", ", "])
def test_a_service_variable_may_list_several_urls(separator):
    from src.settings import ProxySettings

    settings = ProxySettings(
        services={"setosa": separator.join(["http://127.0.0.2:9101", "http://127.0.0.3:9101"])}
    )
    assert [str(url) for url in settings.services["setosa"]] == [
        "http://127.0.0.2:9101/",
        "http://127.0.0.3:9101/",
    ]


def test_calls_that_find_the_name_unresolved_share_one_lookup():
    async def scenario():
        with two_replicas() as replicas:
            async with create_session(max_connections=8, keepalive_seconds=5) as session:
                names = Names(list(REPLICA_HOSTS))
                backends = backends_for(session, replicas.port, names)
                results = await asyncio.gather(
                    *(backends.call_one("svc", "GET", "/health") for _ in range(10))
                )
                return names.lookups, results

    lookups, results = asyncio.run(scenario())
    assert lookups == 1
    assert all(result.ok for result in results)
