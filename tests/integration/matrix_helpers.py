"""Real Matrix users and a gridbot on a real Synapse, for tests/integration/test_matrix.py."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    ErrorResponse,
    InviteMemberEvent,
    MegolmEvent,
    RoomCreateResponse,
    SyncResponse,
    UploadResponse,
)
from nio.crypto.attachments import decrypt_attachment

from bot.app import App
from bot.clock import Clock
from bot.config import Config
from bot.transports.matrix import MatrixTransport
from tests.servers.synapse import Synapse, make_user_client

WAIT = 60.0  # seconds a test waits for something the bot should do
BOT_PASSWORD = "bot-password"
ENCRYPTION = {"type": "m.room.encryption", "state_key": "",
              "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


def unique(name: str) -> str:
    """User names are unique per server, and the session's Synapse is shared."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


class Member:
    """A person on Matrix: a logged-in nio client that syncs in the background and keeps
    every room event and invite it sees. With a `store` directory the client encrypts and
    decrypts like Element does: events it read decrypted are in `decrypted`, those it could
    not decrypt stay `m.room.encrypted`."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.invites: dict[str, dict[str, Any]] = {}  # room → the invite's member event content
        self.decrypted: set[str] = set()  # ids of the events that came encrypted
        self._task: asyncio.Task | None = None

    @classmethod
    async def register(cls, synapse: Synapse, name: str, store: Path | None = None) -> Member:
        path = None
        if store is not None:
            path = store / name
            path.mkdir(parents=True, exist_ok=True)
        member = cls(await make_user_client(synapse, unique(name), store_path=path and str(path)))
        await member.keys()
        first = await member.client.sync(timeout=0)
        assert isinstance(first, SyncResponse), first
        member._task = asyncio.create_task(member._follow())
        return member

    @property
    def user_id(self) -> str:
        return self.client.user_id

    @property
    def localpart(self) -> str:
        """What gridbot calls them: `@alice-1a2b3c`."""
        return self.user_id[1:].split(":")[0]

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        await self.client.close()

    async def keys(self) -> None:
        """What an encrypting client does after each sync: its own keys up, others' down."""
        client = self.client
        if client.olm is None:
            return
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        await client.send_to_device_messages()

    async def _follow(self) -> None:
        while True:
            try:
                response = await self.client.sync(timeout=2000)
                await self.keys()
            except (OSError, TimeoutError):  # the homeserver is restarting
                await asyncio.sleep(0.5)
                continue
            if not isinstance(response, SyncResponse):
                await asyncio.sleep(0.5)
                continue
            for room_id, room in response.rooms.join.items():
                for event in room.timeline.events:
                    if getattr(event, "decrypted", False):
                        self.decrypted.add(event.event_id)
                    self.events[room_id].append(
                        {**event.source, "type": "m.room.encrypted"}
                        if isinstance(event, MegolmEvent) else event.source
                    )
            for room_id, room in response.rooms.invite.items():
                for event in room.invite_state:
                    if isinstance(event, InviteMemberEvent) and event.state_key == self.user_id:
                        self.invites[room_id] = event.content

    async def call(self, request: Callable, *args: Any, **kwargs: Any) -> Any:
        """A request that waits out the homeserver's rate limit, as real clients do."""
        while True:
            response = await request(*args, **kwargs)
            if isinstance(response, ErrorResponse) and response.status_code == "M_LIMIT_EXCEEDED":
                await asyncio.sleep((response.retry_after_ms or 500) / 1000)
                continue
            assert not isinstance(response, ErrorResponse), response
            return response

    def encrypted(self, room_id: str) -> bool:
        room = self.client.rooms.get(room_id)
        return self.client.olm is not None and room is not None and room.encrypted

    async def _known(self, room_id: str) -> None:
        """An encrypting client must have synced a room before it can send there."""
        if self.client.olm is not None:
            await eventually(lambda: room_id in self.client.rooms, f"{self.localpart} in the room")

    async def say(self, room_id: str, text: str, **content: Any) -> str:
        await self._known(room_id)
        sent = await self.call(
            self.client.room_send, room_id, "m.room.message",
            {"msgtype": "m.text", "body": text, **content}, ignore_unverified_devices=True,
        )
        return sent.event_id

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        relation = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        await self._known(room_id)
        sent = await self.call(self.client.room_send, room_id, "m.reaction",
                               {"m.relates_to": relation}, ignore_unverified_devices=True)
        return sent.event_id

    async def send_file(self, room_id: str, name: str, data: bytes, caption: str | None = None) -> str:
        await self._known(room_id)
        encrypt = self.encrypted(room_id)
        uploaded, keys = await self.client.upload(
            io.BytesIO(data), content_type="text/csv", filename=name, filesize=len(data),
            encrypt=encrypt,
        )
        assert isinstance(uploaded, UploadResponse), uploaded
        content = {"msgtype": "m.file", "body": caption or name, "filename": name,
                   "info": {"size": len(data), "mimetype": "text/csv"}}
        if encrypt:
            content["file"] = {**keys, "url": uploaded.content_uri}
        else:
            content["url"] = uploaded.content_uri
        sent = await self.call(self.client.room_send, room_id, "m.room.message", content,
                               ignore_unverified_devices=True)
        return sent.event_id

    async def download(self, content: dict[str, Any]) -> bytes:
        """The bytes of a file event's content, decrypted if it came encrypted."""
        if "file" not in content:
            return (await self.client.download(mxc=content["url"])).body
        file = content["file"]
        data = (await self.client.download(mxc=file["url"])).body
        return decrypt_attachment(data, file["key"]["k"], file["hashes"]["sha256"], file["iv"])

    async def create_room(self, name: str, *invitees: str, **options: Any) -> str:
        created = await self.call(self.client.room_create, name=name, invite=list(invitees), **options)
        assert isinstance(created, RoomCreateResponse)
        return created.room_id

    async def join(self, room_id: str) -> None:
        await self.call(self.client.join, room_id)

    def messages(self, room_id: str, sender: str, msgtype: str | None = None) -> list[dict[str, Any]]:
        """Contents of the m.room.message events `sender` posted in the room, in order."""
        return [
            e["content"] for e in self.events[room_id]
            if e["type"] == "m.room.message" and e["sender"] == sender
            and (msgtype is None or e["content"].get("msgtype") == msgtype)
        ]

    def notices(self, room_id: str, sender: str) -> list[str]:
        return [c["body"] for c in self.messages(room_id, sender, "m.notice")]

    def joined(self, room_id: str, user_id: str) -> bool:
        return any(
            e["type"] == "m.room.member" and e["state_key"] == user_id
            and e["content"].get("membership") == "join"
            for e in self.events[room_id]
        )

    async def ask(self, room_id: str, bot: str, text: str, **content: Any) -> list[str]:
        """Says `text` and returns the bot's notices that follow it in the room, once there is
        one (the bot answers a room's commands in order)."""
        asked = await self.say(room_id, text, **content)

        def answers() -> list[str]:
            events = self.events[room_id]
            position = next((i for i, e in enumerate(events) if e["event_id"] == asked), None)
            if position is None:
                return []
            return [
                e["content"]["body"] for e in events[position + 1:]
                if e["sender"] == bot and e["content"].get("msgtype") == "m.notice"
            ]

        await eventually(answers, f"an answer to {text!r}")
        return answers()

    async def notices_after(self, room_id: str, bot: str, before: int, count: int) -> list[str]:
        """The bot's notices in the room after the first `before`, once there are `count`."""
        await eventually(lambda: len(self.notices(room_id, bot)) >= before + count,
                         f"{count} notice(s) from the bot")
        return self.notices(room_id, bot)[before:]


async def eventually(condition: Callable[[], bool], what: str, within: float = WAIT) -> None:
    try:
        async with asyncio.timeout(within):
            # Polling: the condition spans several clients, the database or the bot's log.
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


class Bot:
    """gridbot with its Matrix transport, started and stopped like a deployment would."""

    def __init__(
        self, synapse: Synapse, data_dir: Path, admins: tuple[str, ...], **options: Any
    ) -> None:
        self.user_id = synapse.register(unique("gridbot"), BOT_PASSWORD)
        self.config = Config(
            data_dir=data_dir, matrix_homeserver=synapse.url, matrix_user=self.user_id,
            matrix_password=BOT_PASSWORD, admins=admins, **options,
        )
        self.app: App | None = None
        self.transport: MatrixTransport | None = None

    async def start(self) -> App:
        self.app = App(self.config, clock=Clock())
        self.transport = MatrixTransport(self.config)
        await self.app.start([self.transport])
        return self.app

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None


async def room_with_bot(owner: Member, bot: Bot, name: str, *members: Member, **options: Any) -> str:
    """A room `owner` creates and invites the bot (and `members`) to; returns once all joined."""
    room_id = await owner.create_room(name, bot.user_id, *(m.user_id for m in members), **options)
    for member in members:
        await eventually(lambda m=member: room_id in m.invites, f"{member.user_id}'s invite")
        await member.join(room_id)
    await eventually(lambda: owner.joined(room_id, bot.user_id), f"the bot joining {name}")
    return room_id
