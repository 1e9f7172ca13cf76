"""The replicas of one class service: every address its name resolves to, in turn.

An orchestrator runs a service as several tasks behind one name (Docker Swarm with
`endpoint_mode: dnsrr`, a Kubernetes headless Service): its DNS answers with one address
per ready replica. The proxy spreads its calls over them itself, rather than through a
virtual IP, so it can see one replica fail and stop calling it while the others answer.
The name is re-resolved every few seconds, as replicas come and go; a replica that fails
is ejected for a while (outlier ejection), and when every replica is ejected the proxy
calls them anyway: the failure is then the service's, and its circuit breaker decides.
"""

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import Counter, Gauge
from yarl import URL

logger = logging.getLogger(__name__)

REPLICA_CALLS = Counter(
    "proxy_backend_replica_calls_total",
    "Backend calls per replica address, failures included",
    ["service", "replica"],
)
REPLICA_EJECTIONS = Counter(
    "proxy_backend_replica_ejections_total",
    "Replicas taken out of rotation after failing (outlier ejection)",
    ["service"],
)
REPLICAS = Gauge("proxy_backend_replicas", "Addresses the service's name resolves to", ["service"])

# (host, port) -> the host's addresses; a test can resolve names its own way.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address of `host` (IPv4 first if it has any), in the order DNS gave them."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    ipv4 = [address for address in addresses if ":" not in address]
    return ipv4 or addresses


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Replica:
    """One address of a service, with its own failure count and ejection time."""

    def __init__(self, service: str, base_url: URL, address: str) -> None:
        self.address = address
        self.base_url = base_url
        self.consecutive_failures = 0
        self.ejected_until = 0.0
        self.calls = REPLICA_CALLS.labels(service, address)
        # Parsed once per path: URL building is a measurable part of each call.
        self._urls: dict[str, URL] = {}

    def url(self, path: str) -> URL:
        if path not in self._urls:
            self._urls[path] = URL(str(self.base_url).rstrip("/") + path)
        return self._urls[path]


class ReplicaSet:
    """The replicas behind a service's URLs; `pick()` gives the next one in rotation.

    No lock: the proxy runs on one event loop and nothing here awaits between a check
    and its update, as in the circuit breaker.
    """

    def __init__(
        self,
        service: str,
        urls: Sequence[str],
        *,
        resolve_interval: float = 2.0,
        eject_after: int = 1,
        ejection_seconds: float = 5.0,
        resolver: Resolver = resolve_host,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.urls = [URL(url) for url in urls]
        self.resolve_interval = resolve_interval
        self.eject_after = eject_after
        self.ejection_seconds = ejection_seconds
        self._resolver = resolver
        self._clock = clock
        self.replicas: list[Replica] = []
        self._next = 0
        self._resolved_at: float | None = None
        self._refreshing: asyncio.Task | None = None
        self._gauge = REPLICAS.labels(service)

    async def ready(self) -> None:
        """Resolve the first time (awaited), then re-resolve in the background when stale."""
        stale = self._resolved_at is None or (
            self._clock() - self._resolved_at >= self.resolve_interval
        )
        if stale and (self._refreshing is None or self._refreshing.done()):
            # One lookup at a time, however many calls find the list stale.
            self._refreshing = asyncio.create_task(self.refresh())
        if self._resolved_at is None and self._refreshing is not None:
            # Shielded: a caller that gives up must not cancel the others' lookup.
            await asyncio.shield(self._refreshing)

    async def refresh(self) -> None:
        """Look the names up again: new addresses join, vanished ones leave the rotation."""
        found: list[tuple[URL, str]] = []
        for url in self.urls:
            found.extend(await self._addresses(url))
        self._resolved_at = self._clock()
        if not found:
            return
        known = {replica.address: replica for replica in self.replicas}
        replicas = [
            known.get(address) or Replica(self.service, base, address) for base, address in found
        ]
        added = [replica.address for replica in replicas if replica.address not in known]
        removed = sorted(set(known) - {replica.address for replica in replicas})
        if added or removed:
            logger.info(
                "replicas of %s: %s (added %s, removed %s)",
                self.service,
                ", ".join(replica.address for replica in replicas),
                ", ".join(added) or "none",
                ", ".join(removed) or "none",
            )
        for address in removed:
            # A replaced task never comes back under its address: drop its series.
            with contextlib.suppress(KeyError):  # another set in this process dropped it
                REPLICA_CALLS.remove(self.service, address)
        self.replicas = replicas
        self._gauge.set(len(replicas))

    async def _addresses(self, url: URL) -> list[tuple[URL, str]]:
        host, port = url.host or "", url.port or 80
        if _is_ip(host):
            return [(url, f"{url.host_port_subcomponent}")]
        try:
            addresses = await self._resolver(host, port)
        except OSError as error:
            # Not up yet, or DNS is down: keep what was known, else call the name itself
            # (the call then fails as unreachable, naming the cause), and look again soon.
            logger.warning("cannot resolve %s for %s: %s", host, self.service, error)
            if any(replica.base_url.host == host for replica in self.replicas):
                return [(r.base_url, r.address) for r in self.replicas if r.base_url.host == host]
            return [(url, url.host_port_subcomponent or host)]
        bases = [url.with_host(address) for address in addresses]
        return [(base, base.host_port_subcomponent or "") for base in bases]

    def pick(self, exclude: Replica | None = None) -> Replica | None:
        """The next replica in rotation that is not ejected (any, if all are); None: no other."""
        candidates = [replica for replica in self.replicas if replica is not exclude]
        if not candidates:
            return None
        now = self._clock()
        healthy = [replica for replica in candidates if replica.ejected_until <= now]
        pool = healthy or candidates
        self._next += 1
        replica = pool[self._next % len(pool)]
        replica.calls.inc()
        return replica

    def others_available(self, replica: Replica) -> bool:
        """Whether a replica other than `replica` is in rotation (the service is not down)."""
        now = self._clock()
        return any(other is not replica and other.ejected_until <= now for other in self.replicas)

    def record(self, replica: Replica, ok: bool, reason: str = "") -> None:
        """A call's outcome on `replica`; enough failures in a row eject it for a while."""
        if ok:
            replica.consecutive_failures = 0
            return
        replica.consecutive_failures += 1
        if len(self.replicas) < 2 or replica.consecutive_failures < self.eject_after:
            return
        now = self._clock()
        if replica.ejected_until <= now:
            REPLICA_EJECTIONS.labels(self.service).inc()
            logger.warning(
                "replica %s of %s ejected for %gs: %s",
                replica.address,
                self.service,
                self.ejection_seconds,
                reason,
            )
        replica.ejected_until = now + self.ejection_seconds
