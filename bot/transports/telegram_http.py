"""The HTTP client under python-telegram-bot's Bot API calls: aiohttp instead of PTB's httpx.

A fan-out is thousands of calls at 30 a second; the bot's CPU per call sets how long each
call holds its rate-limit slot once the loop is busy (see `TelegramRateLimiter`). Measured on
the same calls to a local Bot API server (30 at a time): httpx with httpcore's connection pool
spends about 5 ms of CPU per call, aiohttp about 0.7 ms (a C parser, one write per request).

The wire format is PTB's own: parameters form-encoded (non-string values as JSON), files as
multipart. Long polling (`getUpdates`) keeps PTB's default client: one call at a time.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

# PTB's defaults for HTTPXRequest, in seconds; a file upload may take longer to write.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
MEDIA_WRITE_TIMEOUT = 20.0
POOL_TIMEOUT = 1.0
CONNECTIONS = 256  # PTB's pool size for the bot's calls


class AiohttpRequest(BaseRequest):
    def __init__(self, connections: int = CONNECTIONS) -> None:
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return READ_TIMEOUT

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data is not None and request_data.contains_files
        read = _given(read_timeout, READ_TIMEOUT)
        write = _given(write_timeout, MEDIA_WRITE_TIMEOUT if files else WRITE_TIMEOUT)
        connect = _given(connect_timeout, CONNECT_TIMEOUT)
        pool = _given(pool_timeout, POOL_TIMEOUT)
        # aiohttp has no write timeout of its own: it bounds the whole call instead.
        limits = [t for t in (connect, pool, write, read) if t is not None]
        timeout = aiohttp.ClientTimeout(
            total=sum(limits) if len(limits) == 4 else None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=read,
        )
        body: Any = None
        headers = {}
        if request_data is not None and files:
            form = aiohttp.FormData(request_data.json_parameters)
            for name, (filename, content, mime_type) in request_data.multipart_data.items():
                form.add_field(name, content, filename=filename, content_type=mime_type)
            body = form
        elif request_data is not None:
            body = request_data.url_encoded_parameters()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as error:  # aiohttp's timeouts are TimeoutErrors too
            raise TimedOut from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp.{error.__class__.__name__}: {error}") from error


def _given(value: Any, default: float) -> float | None:
    """A timeout passed to a call (None: no limit), or the default when none was passed."""
    return default if isinstance(value, type(BaseRequest.DEFAULT_NONE)) else value
