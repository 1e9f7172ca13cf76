"""The proxy's httpx transport: httpx's API over one aiohttp connection pool.

httpx's own pool serialises on a lock and collapsed under 32 concurrent fan-outs, and
the generic `httpx-aiohttp` adapter streams every body through chunk iterators and
maps each call's timeouts, which cost about 0.1 ms per call here. Backend bodies are
small JSON documents and the proxy bounds each call itself (`asyncio.timeout`), so this
transport sends the body in one piece, reads the answer in one piece, and maps
aiohttp's errors onto httpx's, so callers see only httpx.
"""

import http.cookiejar

import aiohttp
import httpx
import yarl


class RejectAllCookies(http.cookiejar.CookieJar):
    """A jar that never stores or sends a cookie.

    One client serves every caller of the proxy: a backend's Set-Cookie must not be
    replayed on another caller's request. Skipping the jar also spares its parsing.
    """

    def extract_cookies(self, response, request) -> None:
        return None

    def add_cookie_header(self, request) -> None:
        return None


def _as_httpx_error(error: aiohttp.ClientError) -> httpx.TransportError:
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(error, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(error, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    if isinstance(error, aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message)
    return httpx.ReadError(message)  # disconnected, reset, truncated body


class AiohttpJsonTransport(httpx.AsyncBaseTransport):
    """Sends each request over a shared `aiohttp.ClientSession` of `max_connections`.

    An idle connection is closed after `keepalive_seconds`, which must be shorter than
    the servers' own keep-alive timeout, or a request can meet a connection the server
    is closing.
    """

    def __init__(self, max_connections: int, keepalive_seconds: float) -> None:
        self.max_connections = max_connections
        self.keepalive_seconds = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running event loop, as aiohttp requires.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=self.max_connections,
                keepalive_timeout=self.keepalive_seconds,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # No aiohttp timeout: the proxy puts one deadline on the whole call.
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,  # httpx decodes Content-Encoding itself
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._get_session()
        try:
            async with session.request(
                request.method,
                # httpx has already percent-encoded the URL.
                yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=await request.aread() or None,
                allow_redirects=False,
            ) as response:
                content = await response.read()
        except aiohttp.ClientError as error:
            raise _as_httpx_error(error) from error
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            content=content,
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
