"""The in-repo Bot API server (tests/servers/botapi.py) in a process of its own, as Telegram
would be: a benchmark's bot process then spends its CPU on the bot alone.

    async with BotAPIProcess() as api:
        await api.add_group(-100123, "1网格")
        config = Config(telegram_token=api.token, telegram_api_url=api.root_url, ...)

The child serves the Bot API on one port and a small control API on another (users and
groups, what users type, the call log). The parent keeps a copy of the call log, fetched as
it grows (a long poll), so waiting for what the bot sent costs the server nothing per check.
Times are `time.monotonic()` in the server process when each call arrived: on Linux the
same clock as the parent's.

The child stops when its standard input closes (the parent ended, or `close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from tests.servers.botapi import Call, FakeBotAPI

REPO = Path(__file__).resolve().parents[1]
POLL = 30.0  # seconds a call-log long poll waits for something new
MESSAGES = ("sendMessage", "sendDocument")
# Seconds the parent lets calls gather before asking again: it fetches in the bot's process.
BATCH = 0.25


class BotAPIProcess:
    """The parent's handle: the server's control methods, and the call log as it grows."""

    def __init__(self) -> None:
        self._child: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._control = ""
        self.token = ""
        self.root_url = ""
        self._calls: list[Call] = []
        self._sent: dict[int, list[Call]] = defaultdict(list)
        self._changed = asyncio.Event()
        self._follower: asyncio.Task | None = None

    async def __aenter__(self) -> BotAPIProcess:
        self._child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.botapi_process", cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self._child.stdout is not None
        hello = json.loads(await self._child.stdout.readline())
        self.token, self.root_url, self._control = hello["token"], hello["api"], hello["control"]
        self._http = aiohttp.ClientSession()
        self._follower = asyncio.create_task(self._follow())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        if self._http is not None:
            await self._http.close()
        if self._child is not None:
            assert self._child.stdin is not None
            self._child.stdin.close()
            await self._child.wait()

    async def _post(self, path: str, **values: Any) -> Any:
        assert self._http is not None
        async with self._http.post(f"{self._control}/{path}", json=values) as answer:
            answer.raise_for_status()
            return await answer.json()

    # -- the world around the bot ---------------------------------------------------------

    async def add_users(self, users: list[tuple[int, str, str]]) -> None:
        await self._post("users", users=users)

    async def add_groups(self, groups: list[tuple[int, str]]) -> None:
        await self._post("groups", groups=groups)

    async def user_says(self, user_id: int, chat_id: int, text: str) -> None:
        await self._post("says", user=user_id, chat=chat_id, text=text)

    # -- what the bot did -----------------------------------------------------------------

    def calls(self) -> list[Call]:
        """Every answered call fetched so far, oldest first; `params` holds `chat_id` and,
        for messages, `text`."""
        return self._calls

    def sent(self, chat_id: int) -> list[Call]:
        """Messages the bot sent to `chat_id`, oldest first."""
        return self._sent[chat_id]

    async def wait_until(
        self, condition: Callable[[], bool], timeout: float, what: str  # noqa: ASYNC109
    ) -> None:
        """Waits until `condition()` holds; it is checked again whenever calls arrive."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"{what} not met within {timeout} s") from None

    async def _follow(self) -> None:
        while True:
            new = await self._post("calls", since=len(self._calls))
            for method, at, params, status in new:
                call = Call(method, at, params, status)
                self._calls.append(call)
                if method in MESSAGES and status == HTTPStatus.OK:
                    self._sent[params["chat_id"]].append(call)
            if new:
                self._changed.set()  # wakes every waiter; later ones wait for the next
                self._changed = asyncio.Event()
                await asyncio.sleep(BATCH)


# -- the child ----------------------------------------------------------------------------


def _brief(params: dict[str, Any]) -> dict[str, Any]:
    brief: dict[str, Any] = {}
    if params.get("chat_id") is not None:
        brief["chat_id"] = int(params["chat_id"])
    if "text" in params:
        brief["text"] = params["text"]
    return brief


async def _serve() -> None:
    api = FakeBotAPI()
    await api.start()
    routes = web.RouteTableDef()

    @routes.post("/users")
    async def users(request: web.Request) -> web.Response:
        for user_id, name, username in (await request.json())["users"]:
            api.add_user(user_id, name, username)
        return web.json_response(None)

    @routes.post("/groups")
    async def groups(request: web.Request) -> web.Response:
        for chat_id, title in (await request.json())["groups"]:
            api.add_group(chat_id, title)
        return web.json_response(None)

    @routes.post("/says")
    async def says(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(api.user_says(body["user"], body["chat"], body["text"]))

    @routes.post("/calls")
    async def calls(request: web.Request) -> web.Response:
        since = (await request.json())["since"]
        with contextlib.suppress(TimeoutError):
            await api.wait_until(lambda: len(api.calls()) > since, POLL)
        new = api.calls()[since:]
        return web.json_response([(c.method, c.at, _brief(c.params), c.status) for c in new])

    control = web.Application()
    control.add_routes(routes)
    runner = web.AppRunner(control, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    print(json.dumps({"token": api.token, "api": api.root_url,
                      "control": f"http://127.0.0.1:{port}"}), flush=True)
    # Until the parent closes our standard input.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)
    await runner.cleanup()
    await api.stop()


if __name__ == "__main__":
    asyncio.run(_serve())
