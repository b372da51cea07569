"""The Matrix transport, on matrix-nio 0.26 in the bot's own event loop.

One bot account: it logs in with its password once and keeps the session (user, device,
access token) in the database, joins every room it is invited to, answers in `m.notice`s,
and turns a tap on one of its own reactions into the button's command.

Nothing is lost, nothing is handled twice: the sync token lives in the database and moves
only after every event of a sync was handled, each message reaches the dispatcher with
`dedupe_key = "matrix:<event_id>"` (recorded with the command's effects), and a `limited`
timeline is back-filled from `prev_batch` to the previous token before the timeline's own
events. The very first start skips history: commands from before the bot existed stay
unanswered. In a room just joined, only what came after the bot's own join counts.

Files for a command (e.g. `/household import`): the file's caption, a command sent as a
reply to the file, or the sender's next command in that room within 10 minutes.

End-to-end encryption (matrix-nio's `e2e` extra, vodozemac): the device's keys and its Olm
and Megolm sessions live in an SQLite store per instance under GRIDBOT_DATA_DIR/matrix-store
(the session in the database names the device; a device without its store logs in anew).
In an encrypted room everything the bot sends is encrypted (files too), for the devices of
the room's current members (joined or invited) that the trust policy allows:
`tofu` (default) trusts a member's device the first time it is seen (nio pins its signing
key), `verified` only devices listed in matrix-store/trusted-devices (`@user:server
DEVICE_ID ed25519-key` a line). Membership changes start a new Megolm session, so someone who
left cannot read what comes after. A message the bot cannot decrypt is logged, its key is
asked of the sender's device, and if it has not come after KEY_WAIT the sender is asked to
send the message again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import html
import io
import json
import logging
import mimetypes
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    Event,
    InviteMemberEvent,
    LoginResponse,
    MatrixRoom,
    MegolmEvent,
    MessageDirection,
    ReactionEvent,
    RoomEncryptedFile,
    RoomMemberEvent,
    RoomMessageFile,
    RoomMessageText,
    RoomPreset,
    SyncResponse,
)
from nio.crypto.attachments import decrypt_attachment
from nio.exceptions import EncryptionError, LocalProtocolError
from nio.store import SqliteStore
from sqlalchemy import select

from bot.transports.base import (
    Attachment,
    CannotDeliver,
    Capabilities,
    Incoming,
    Outgoing,
    RateLimited,
    Sent,
    split_text,
)
from storage import models

if TYPE_CHECKING:
    from bot.app import App
    from bot.config import Config

log = logging.getLogger(__name__)

MAX_LENGTH = 30_000  # characters per m.notice, at most
MAX_CONTENT_BYTES = 60_000  # homeservers refuse events over 64 KiB (body + HTML, UTF-8)
SYNC_TIMEOUT_MS = 30_000
TIMELINE_LIMIT = 20  # events per room and sync; more than this comes back `limited`
BACKFILL_PAGE = 100
MAX_BACKOFF = 60.0  # seconds between attempts while the homeserver is away
ATTEMPTS = 4  # a request gives up after ~7 s of outage (a send is retried by the outbox)
FILE_WINDOW_MS = 10 * 60 * 1000
VARIATION_SELECTOR = "\ufe0f"  # clients add it to some emoji; "✋" and "✋️" are one button
KEY_WAIT = 10.0  # seconds a message the bot cannot decrypt waits for its key
ROOM_WAIT = 30.0  # seconds a send waits for a room the bot just made to come in a sync
MEGOLM = "m.megolm.v1.aes-sha2"

R = TypeVar("R")


class Unavailable(Exception):
    """The homeserver is unreachable or failing for now; the same request may work later."""


class MatrixTransport:
    name = "matrix"
    builtin_admins: frozenset[str] = frozenset()
    app: App  # given by `start`

    def mention(self, word: str) -> tuple[str | None, str | None]:
        """`@alice:example.org` is a full user id; `@alice` a local name."""
        return (word, None) if ":" in word else (None, word.lstrip("@").lower())
    capabilities = Capabilities(
        reactions=True, files=True, edit=True, pin=True, delete=True, max_length=MAX_LENGTH
    )

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store_dir = Path(config.data_dir) / "matrix-store"
        self.trust = config.matrix_trust
        # No retries inside nio: rate limits and outages are handled in `_call`, so a send
        # can give up and leave the message to the outbox instead of blocking it.
        self.client = AsyncClient(
            config.matrix_homeserver,
            config.matrix_user,
            config=AsyncClientConfig(
                max_limit_exceeded=0, max_timeouts=0, request_timeout=30,
                encryption_enabled=True, store=SqliteStore, store_sync_tokens=False,
            ),
            store_path=str(self.store_dir),
        )
        self.sync_filter = {
            "room": {"timeline": {"limit": TIMELINE_LIMIT}},
            "presence": {"not_types": ["*"]},
        }
        self._token: str | None = None
        # (room, sender) → their last file
        self._files: dict[tuple[str, str], RoomMessageFile | RoomEncryptedFile] = {}
        self._stopping = asyncio.Event()
        self._loop: asyncio.Task | None = None
        # Messages the bot could not decrypt yet: event id → (room, event, first seen).
        self._undecryptable: dict[str, tuple[str, MegolmEvent, float]] = {}
        self._key_requests: set[str] = set()  # Megolm session ids asked for
        self._synced = asyncio.Event()  # nio knows the rooms once the first sync is in
        self._created: set[str] = set()  # rooms the bot made, maybe not in a sync yet
        self._lock: IO[bytes] | None = None

    # --- life cycle ---------------------------------------------------------------------

    async def start(self, app: App) -> None:
        self.app = app
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._lock_store()
        self.client.config = replace(self.client.config, pickle_key=await self._pickle_key())
        await self._log_in()
        await self._keys()
        self._token = await self._load(self._token_key)
        localpart = self.client.user_id[1:].split(":")[0]
        app.bot_usernames.update({localpart.lower(), self.client.user_id[1:].lower()})
        self._stopping.clear()
        self._synced.clear()
        self._loop = asyncio.create_task(self._run(), name="matrix-sync")

    async def stop_taking(self) -> None:
        """No new sync: the one being handled finishes and its token is saved."""
        self._stopping.set()
        if self._loop is not None:
            await self._loop

    async def stop(self) -> None:
        """Lets the sync being handled finish (its token is saved) and its answers go out."""
        await self.stop_taking()
        await self._retry_undecryptable(give_up=True)  # no one waits in vain after a restart
        await self.app.outbox.idle()
        await self.client.close()
        if self._lock is not None:
            self._lock.close()  # releases the key store
            self._lock = None

    @property
    def _session_key(self) -> str:
        return f"matrix:session:{self.config.matrix_user}"

    @property
    def _token_key(self) -> str:
        return f"matrix:next_batch:{self.client.user_id}"

    def _direct_key(self, room_id: str) -> str:
        return f"matrix:direct:{self.client.user_id}:{room_id}"

    async def _pickle_key(self) -> str:
        """The passphrase the key store is encrypted with, made once, kept in the database."""
        key = f"matrix:pickle_key:{self.config.matrix_user}"
        saved = await self._load(key)
        if saved is None:
            saved = secrets.token_urlsafe(32)
            await self._save(key, saved)
        return saved

    def _lock_store(self) -> None:
        """One process per key store: two would break each other's encryption sessions."""
        lock = (self.store_dir / "lock").open("wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RuntimeError(
                f"another gridbot process uses the Matrix key store in {self.store_dir}; "
                "run one instance per Matrix account"
            ) from None
        self._lock = lock

    def _store_file(self, user_id: str, device_id: str) -> Path:
        return self.store_dir / f"{user_id}_{device_id}.db"

    async def _log_in(self, *, fresh: bool = False) -> None:
        """Restores the saved session; logs in with the password only the first time (or
        when the homeserver has forgotten the session)."""
        saved = None if fresh else await self._load(self._session_key)
        if saved:
            session = json.loads(saved)
            # A device whose keys are lost cannot read or send encrypted messages again.
            if session["homeserver"] == self.config.matrix_homeserver and self._store_file(
                session["user_id"], session["device_id"]
            ).exists():
                self.client.restore_login(
                    session["user_id"], session["device_id"], session["access_token"]
                )
                return
            log.warning("matrix: no key store for device %s; logging in as a new device",
                        session["device_id"])
        response = await self.client.login(self.config.matrix_password, device_name="gridbot")
        if not isinstance(response, LoginResponse):
            raise RuntimeError(f"Matrix login as {self.config.matrix_user} failed: {response}")
        await self._save(self._session_key, json.dumps({
            "homeserver": self.config.matrix_homeserver, "user_id": response.user_id,
            "device_id": response.device_id, "access_token": response.access_token,
        }))

    # --- receiving ----------------------------------------------------------------------

    async def _run(self) -> None:
        full_state = True  # the first sync of a run loads every room's members
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                response = await self._until_stopped(self._sync(full_state))
                if response is None:
                    return
                self._synced.set()
                await self._handle_sync(response)
                await self._save(self._token_key, response.next_batch)
                self._token = response.next_batch
                full_state = False
                backoff = 1.0
                await self._keys()
                await self._retry_undecryptable()
            except Exception as error:  # the loop must outlive any failure; the batch is redone
                if isinstance(error, Unavailable | aiohttp.ClientError | TimeoutError):
                    log.warning("matrix sync failed (%s); retrying in %.0f s", error, backoff)
                else:
                    log.exception("matrix sync failed; retrying in %.0f s", backoff)
                await self._until_stopped(asyncio.sleep(backoff))
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _keys(self) -> None:
        """Uploads the device's keys, learns the devices of people in encrypted rooms, and
        makes Olm sessions with them, as nio asks after each sync."""
        client = self.client
        try:
            if client.should_upload_keys:
                await self._call(client.keys_upload)
            if client.should_query_keys:
                await self._call(client.keys_query)
            if client.should_claim_keys:
                await self._call(client.keys_claim, client.get_users_for_key_claiming())
            await client.send_to_device_messages()
        except CannotDeliver as refusal:
            log.warning("matrix: key exchange refused: %s", refusal)
        except LocalProtocolError:  # a send did the same meanwhile
            pass

    async def _until_stopped(self, work: Awaitable[R]) -> R | None:
        """Runs `work` unless stop() comes first (then cancels it and returns None)."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not task.done():
            task.cancel()
            return None
        return task.result()

    async def _sync(self, full_state: bool) -> SyncResponse:
        response = await self.client.sync(
            # Short while messages wait for their keys: they are retried after each sync.
            timeout=int(KEY_WAIT * 1000) if self._undecryptable else SYNC_TIMEOUT_MS,
            sync_filter=self.sync_filter, since=self._token,
            full_state=full_state and self._token is not None or None,
        )
        if isinstance(response, SyncResponse):
            return response
        if response.status_code == "M_UNKNOWN_TOKEN":
            log.warning("matrix session expired; logging in again")
            await self._log_in(fresh=True)
        if response.retry_after_ms:
            await asyncio.sleep(response.retry_after_ms / 1000)
        raise Unavailable(str(response))

    async def _handle_sync(self, response: SyncResponse) -> None:
        for room_id, info in response.rooms.invite.items():
            await self._accept_invite(room_id, info.invite_state)
        if self._token is None:
            return  # the first start ever: history is not ours to answer
        # Rooms side by side (their commands can share a commit), each room's events in order;
        # the sync counts as handled (its token saved) once every room's are.
        outcomes = await asyncio.gather(
            *(self._handle_room(room_id, room) for room_id, room in response.rooms.join.items()),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _handle_room(self, room_id: str, room: Any) -> None:
        events = list(room.timeline.events)
        if room.timeline.limited and room.timeline.prev_batch:
            events = await self._gap(room_id, room.timeline.prev_batch) + events
        for event in self._after_own_join(events):
            await self._handle_event(room_id, event)

    async def _gap(self, room_id: str, prev_batch: str) -> list[Event]:
        """The events between the previous sync and a limited timeline, oldest first."""
        events: list[Event] = []
        start = prev_batch
        while True:
            try:
                page = await self._call(
                    self.client.room_messages, room_id, start=start, end=self._token,
                    direction=MessageDirection.back, limit=BACKFILL_PAGE,
                )
            except CannotDeliver as refusal:  # asking again would not help
                log.warning("matrix: cannot back-fill %s: %s", room_id, refusal)
                break
            events.extend(page.chunk)
            if not page.chunk or not page.end or page.end == start:
                break
            start = page.end
        events.reverse()
        log.info("matrix: back-filled %d events in %s", len(events), room_id)
        return events

    def _after_own_join(self, events: list[Event]) -> list[Event]:
        """In a room the bot has just joined, what was said before it came is not for it."""
        for index in range(len(events) - 1, -1, -1):
            event = events[index]
            if (
                isinstance(event, RoomMemberEvent) and event.state_key == self.client.user_id
                and event.membership == "join" and event.prev_membership != "join"
            ):
                return events[index + 1:]
        return events

    async def _accept_invite(self, room_id: str, invite_state: list[Event]) -> None:
        invite = next(
            (e for e in invite_state if isinstance(e, InviteMemberEvent)
             and e.state_key == self.client.user_id and e.membership == "invite"),
            None,
        )
        try:
            await self._call(self.client.join, room_id)
        except CannotDeliver as refusal:  # the invite was withdrawn or the room is gone
            log.warning("matrix: cannot join %s: %s", room_id, refusal)
            return
        if invite is not None and invite.content.get("is_direct"):
            await self._save(self._direct_key(room_id), invite.sender)
        log.info("matrix: joined %s", room_id)

    async def _handle_event(self, room_id: str, event: Event) -> None:
        if event.sender == self.client.user_id:
            return
        if isinstance(event, MegolmEvent):
            await self._cannot_decrypt(room_id, event)
        elif isinstance(event, ReactionEvent):
            await self._handle_reaction(room_id, event)
        elif isinstance(event, RoomMessageFile | RoomEncryptedFile):
            if event.source["content"].get("filename") in (None, event.body):
                self._files[(room_id, event.sender)] = event  # for the sender's next command
            else:  # the body is a caption, maybe the command itself
                await self._dispatch(room_id, event, event.body, (await self._download(event),))
        elif isinstance(event, RoomMessageText):
            relates = event.source["content"].get("m.relates_to") or {}
            if relates.get("rel_type") == "m.replace":
                return  # an edit: the original was handled already
            reply_to = (relates.get("m.in_reply_to") or {}).get("event_id")
            text = _without_reply_fallback(event.body) if reply_to else event.body
            attachments: tuple[Attachment, ...] = ()
            if text.lstrip().startswith(("/", "／")):
                attachments = await self._attachments_for(room_id, event, reply_to)
            await self._dispatch(room_id, event, text, attachments, reply_to=reply_to)

    # --- messages the bot cannot decrypt ------------------------------------------------------

    async def _cannot_decrypt(self, room_id: str, event: MegolmEvent) -> None:
        """Never dropped in silence: logged, its key asked of the sender's device, and kept
        to be read when the key comes (see _retry_undecryptable)."""
        if event.event_id in self._undecryptable:
            return
        log.warning(
            "matrix: cannot decrypt %s from %s (device %s) in %s: no key for Megolm session %s;"
            " asking the sender's device for it", event.event_id, event.sender, event.device_id,
            room_id, event.session_id,
        )
        event.room_id = room_id
        self._undecryptable[event.event_id] = (room_id, event, time.monotonic())
        if event.session_id in self._key_requests or not event.device_id:
            return
        self._key_requests.add(event.session_id)
        request = event.as_key_request(event.sender, self.client.device_id,
                                       device_id=event.device_id)
        try:
            await self._call(self.client.to_device, request)
        except CannotDeliver as refusal:
            log.warning("matrix: cannot ask for the key of %s: %s", event.event_id, refusal)

    async def _retry_undecryptable(self, *, give_up: bool = False) -> None:
        """After each sync: what can be decrypted now is handled; what waited KEY_WAIT in vain
        (or anything still waiting when the bot stops) gets the sender asked to send it again."""
        for event_id, (room_id, event, since) in list(self._undecryptable.items()):
            try:
                decrypted = self.client.decrypt_event(event)
            except EncryptionError:
                if time.monotonic() - since < KEY_WAIT and not give_up:
                    continue
                del self._undecryptable[event_id]
                log.warning("matrix: no key came for %s; asking %s to send it again",
                            event_id, event.sender)
                await self._ask_to_send_again(room_id, event)
                continue
            del self._undecryptable[event_id]
            log.info("matrix: the key for %s came; handling it", event_id)
            await self._handle_event(room_id, decrypted)

    async def _ask_to_send_again(self, room_id: str, event: MegolmEvent) -> None:
        text = self.app.renderer.render(
            self.app.config.lang, "core/undecryptable", private=False,
            person="@" + _localpart(event.sender),
        )
        try:
            await self.send(room_id, Outgoing(
                text=text, reply_to=event.event_id, key=f"undecryptable-{event.event_id}",
            ))
        except (CannotDeliver, Unavailable) as error:
            log.warning("matrix: cannot ask %s to send again: %s", event.sender, error)

    async def _attachments_for(
        self, room_id: str, command: Event, reply_to: str | None
    ) -> tuple[Attachment, ...]:
        """The file a command refers to: the one it replies to, or the sender's last file in
        this room if it came within FILE_WINDOW_MS before."""
        recent = self._files.pop((room_id, command.sender), None)
        if reply_to:
            try:
                replied = await self._call(self.client.room_get_event, room_id, reply_to)
            except CannotDeliver:
                replied = None
            if replied is not None and isinstance(
                replied.event, RoomMessageFile | RoomEncryptedFile
            ):
                return (await self._download(replied.event),)
        if (
            recent is not None
            and command.server_timestamp - recent.server_timestamp <= FILE_WINDOW_MS
        ):
            return (await self._download(recent),)
        return ()

    async def _download(self, event: RoomMessageFile | RoomEncryptedFile) -> Attachment:
        name = event.source["content"].get("filename") or event.body
        try:
            response = await self._call(self.client.download, mxc=event.url)
        except CannotDeliver as refusal:  # the media is gone: the command says what is missing
            log.warning("matrix: cannot download %s: %s", event.url, refusal)
            return Attachment(name=name, data=b"")
        if isinstance(event, RoomEncryptedFile):
            try:
                data = decrypt_attachment(response.body, event.key["k"], event.hashes["sha256"],
                                          event.iv)
            except (EncryptionError, KeyError) as error:
                log.warning("matrix: cannot decrypt the file %s: %s", event.url, error)
                return Attachment(name=name, data=b"")
            return Attachment(name=name, data=data)
        return Attachment(name=name, data=response.body)

    async def _handle_reaction(self, room_id: str, event: ReactionEvent) -> None:
        """A tap on one of the bot's reactions runs that button's command for the tapper."""
        async with self.app.db.transaction() as db:
            posted = await db.scalar(select(models.PostedMessage).where(
                models.PostedMessage.transport == self.name,
                models.PostedMessage.chat == room_id,
                models.PostedMessage.message == event.reacts_to,
            ))
        key = event.key.replace(VARIATION_SELECTOR, "")
        for button in posted.buttons if posted else ():
            if _reaction_key(button).replace(VARIATION_SELECTOR, "") == key:
                await self._dispatch(
                    room_id, event, button["command"], (), reply_to=event.reacts_to
                )
                return

    async def _dispatch(
        self, room_id: str, event: Event, text: str, attachments: tuple[Attachment, ...],
        reply_to: str | None = None,
    ) -> None:
        room = self.client.rooms.get(room_id)
        sender = event.sender
        await self.app.handle(Incoming(
            transport=self.name, chat=room_id, sender=sender, text=text,
            is_direct=await self._is_direct_with(room_id, sender),
            sender_name=(room.user_name(sender) if room else None) or _localpart(sender),
            sender_username=_localpart(sender),
            chat_title=room.display_name if room else "",
            attachments=attachments, message_id=event.event_id, reply_to=reply_to,
            dedupe_key=f"matrix:{event.event_id}",
        ), wait_for_delivery=False)  # answers wait out rate limits while reading goes on

    # --- direct rooms -------------------------------------------------------------------

    async def _is_direct_with(self, room_id: str, user: str) -> bool:
        """A direct room was made by or for a DM with `user`, and holds only the bot and them."""
        members = await self._members(room_id)
        if members is None or user not in members or members - {user, self.client.user_id}:
            return False
        return await self._load(self._direct_key(room_id)) == user

    async def _members(self, room_id: str) -> set[str] | None:
        """Who is in the room (joined or invited); None if the bot cannot tell."""
        room: MatrixRoom | None = self.client.rooms.get(room_id)
        if room is not None:
            return set(room.users)
        try:  # a room the bot made since the last sync
            state = await self._call(self.client.room_get_state, room_id)
        except CannotDeliver:
            return None
        return {
            e["state_key"] for e in state.events
            if e.get("type") == "m.room.member"
            and e["content"].get("membership") in ("join", "invite")
        }

    async def _direct_room(self, user: str, dm_chat: str | None) -> str:
        """The direct room with `user`: the known one if it still is one, else a new one."""
        async with self.app.db.transaction() as db:
            known = (await db.scalars(select(models.KeyValue.key).where(
                models.KeyValue.key.startswith(self._direct_key(""), autoescape=True),
                models.KeyValue.value == user,
            ))).all()
        candidates = [dm_chat] if dm_chat else []
        candidates += [key.removeprefix(self._direct_key("")) for key in known]
        for room_id in dict.fromkeys(candidates):
            if await self._is_direct_with(room_id, user):
                return room_id
        # Homeservers accept invites for users who do not exist; the profile tells.
        profile = await self.client.get_profile(user)
        if isinstance(profile, ErrorResponse) and _status(profile) == 404:
            raise CannotDeliver(f"no Matrix user {user}")
        created = await self._call(
            self.client.room_create, is_direct=True, invite=[user],
            preset=RoomPreset.trusted_private_chat,
            initial_state=[{"type": "m.room.encryption", "state_key": "",
                            "content": {"algorithm": MEGOLM}}],
        )
        await self._save(self._direct_key(created.room_id), user)
        self._created.add(created.room_id)
        log.info("matrix: opened a direct room with %s", user)
        # The room key must reach the invitee: wait until a sync shows them in the room.
        room_id = created.room_id
        await self._until(lambda: user in getattr(self.client.rooms.get(room_id), "users", ()),
                          f"the invite in {room_id}")
        return created.room_id

    async def _until(self, condition: Callable[[], bool], what: str) -> None:
        """Waits (ROOM_WAIT at most) for the sync loop to bring what `condition` checks."""
        deadline = time.monotonic() + ROOM_WAIT
        while not condition():
            if time.monotonic() > deadline:
                raise Unavailable(f"{what} has not come in a sync yet")
            await asyncio.sleep(0.1)

    # --- sending ------------------------------------------------------------------------

    async def send(self, chat: str, message: Outgoing) -> Sent:
        encrypted = await self._prepare_encrypted(chat)
        ids: list[str] = []
        for index, part in enumerate(_parts(message.text)):
            content = _notice(part)
            if index == 0 and message.reply_to:
                content["m.relates_to"] = await self._reply_relation(chat, message.reply_to)
            # Rate limited before anything went out: the outbox merges what waits (rc_message).
            ids.append(await self._send_event(chat, "m.room.message", content, message.key, index,
                                              give_way=index == 0))
        if message.file_name:
            ids.append(await self._send_file(chat, message.file_name, message, encrypted))
        if message.buttons and ids:
            # The bot reacts first, so people just tap.
            for index, button in enumerate(message.buttons):
                relation = {
                    "rel_type": "m.annotation", "event_id": ids[-1], "key": _reaction_key(button)
                }
                await self._send_event(chat, "m.reaction", {"m.relates_to": relation},
                                       message.key, f"react{index}")
        if message.pin and ids:
            await self._pin(chat, ids[0])
        return Sent(chat=chat, message_ids=ids)

    async def send_direct(self, user: str, dm_chat: str | None, message: Outgoing) -> Sent:
        return await self.send(await self._direct_room(user, dm_chat), message)

    async def delete(self, chat: str, message_id: str) -> bool:
        """Redacts a person's event; needs a power level that allows redaction."""
        try:
            await self._call(self.client.room_redact, chat, message_id, reason="private details")
        except CannotDeliver as error:
            log.info("could not redact %s in %s: %s", message_id, chat, error)
            return False
        return True

    async def _reply_relation(self, chat: str, event_id: str) -> dict[str, Any]:
        """A reply to the event; in its thread if it was said in one."""
        relation: dict[str, Any] = {"m.in_reply_to": {"event_id": event_id}}
        try:
            replied = await self._call(self.client.room_get_event, chat, event_id)
        except CannotDeliver:  # gone: a plain reply still reads right
            return relation
        thread = replied.event.source["content"].get("m.relates_to") or {}
        if thread.get("rel_type") == "m.thread":
            relation.update(rel_type="m.thread", event_id=thread["event_id"], is_falling_back=False)
        return relation

    async def _send_event(
        self, chat: str, event_type: str, content: dict[str, Any], key: str, part: int | str,
        *, give_way: bool = False,
    ) -> str:
        # The same transaction id on a retry makes the homeserver return the first event.
        tx_id = f"{key}-{part}" if key else None
        response = await self._call(
            self.client.room_send, chat, event_type, content, tx_id=tx_id,
            ignore_unverified_devices=self.trust == "tofu", give_way=give_way,
        )
        return response.event_id

    # --- encryption: whom the room key goes to ----------------------------------------------

    async def _prepare_encrypted(self, chat: str) -> bool:
        """Whether the room is encrypted; if it is, its members' devices are known and the
        trust policy is applied to them before anything is encrypted for them."""
        client = self.client
        await self._until(self._synced.is_set, "the first sync")
        if chat in self._created:  # a room the bot just made: nio knows it after the next sync
            await self._until(lambda: chat in client.rooms, f"the room {chat}")
        room = client.rooms.get(chat)
        if room is None:
            raise CannotDeliver(f"the bot is not in the room {chat}")
        if not room.encrypted:
            return False
        if not room.members_synced:
            await self._call(client.joined_members, chat)
        if client.should_query_keys:
            with contextlib.suppress(LocalProtocolError):  # the sync loop did it meanwhile
                await self._call(client.keys_query)
        self._apply_trust(chat)
        return True

    def _apply_trust(self, chat: str) -> None:
        """Marks each member device trusted or blocked as the policy says (nio then gives room
        keys to trusted devices only), and starts a new room key if the set of devices that
        should hold the current one has changed."""
        client = self.client
        trusted = self._trusted_devices() if self.trust == "verified" else set()
        session = client.olm.outbound_group_sessions.get(chat)
        holders = session.users_shared_with if session is not None and session.shared else None
        rotate = False
        for user_id in client.rooms[chat].users:
            for device in client.device_store.active_user_devices(user_id):
                if device.id == client.device_id:
                    continue
                allowed = self.trust == "tofu" or (user_id, device.id, device.ed25519) in trusted
                if allowed and not device.verified:
                    log.info("matrix: trusting %s's device %s (%s)", user_id, device.id,
                             "on first use" if self.trust == "tofu" else "listed")
                    client.unblacklist_device(device)
                    client.verify_device(device)
                elif not allowed and not device.blacklisted:
                    log.warning("matrix: %s's device %s is not verified; it gets no room keys",
                                user_id, device.id)
                    client.unverify_device(device)
                    client.blacklist_device(device)
                if holders is not None and allowed != ((user_id, device.id) in holders):
                    rotate = True  # a device came, or lost the trust, since the key was shared
        if rotate:
            client.invalidate_outbound_session(chat)

    def _trusted_devices(self) -> set[tuple[str, str, str]]:
        """matrix-store/trusted-devices: `@user:server DEVICE_ID ed25519-key` a line."""
        path = self.store_dir / "trusted-devices"
        if not path.exists():
            return set()
        trusted = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split("#")[0].split()
            if len(words) == 3:
                trusted.add((words[0], words[1], words[2]))
            elif words:
                log.warning("matrix: %s: cannot read the line %r", path, line)
        return trusted

    async def _send_file(self, chat: str, name: str, message: Outgoing, encrypted: bool) -> str:
        data = message.file_data or b""
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        keys: dict[str, Any] = {}

        async def upload():
            response, file_keys = await self.client.upload(
                io.BytesIO(data), content_type=mimetype, filename=name,
                filesize=len(data), encrypt=encrypted,
            )
            keys.update(file_keys or {})
            return response

        uploaded = await self._call(upload)
        content = {
            "msgtype": "m.file", "body": name, "filename": name,
            "info": {"size": len(data), "mimetype": mimetype},
        }
        if encrypted:  # the homeserver holds only ciphertext; the key travels in the event
            content["file"] = {**keys, "url": uploaded.content_uri, "mimetype": mimetype}
        else:
            content["url"] = uploaded.content_uri
        return await self._send_event(chat, "m.room.message", content, message.key, "file")

    async def _pin(self, chat: str, event_id: str) -> None:
        """Best effort: the bot may lack the power to pin; the message is out either way."""
        try:
            current = await self._call(
                self.client.room_get_state_event, chat, "m.room.pinned_events"
            )
            pinned = list(current.content.get("pinned", []))
        except CannotDeliver:  # nothing pinned yet
            pinned = []
        if event_id in pinned:
            return
        try:
            await self._call(self.client.room_put_state, chat, "m.room.pinned_events",
                             {"pinned": [*pinned, event_id]})
        except CannotDeliver as refusal:
            log.warning("matrix: cannot pin in %s: %s", chat, refusal)

    # --- the homeserver -------------------------------------------------------------------

    async def _call(
        self, request: Callable[..., Awaitable[R]], *args: Any, give_way: bool = False,
        **kwargs: Any,
    ) -> R:
        """One request: waits out rate limits (M_LIMIT_EXCEEDED, retry_after_ms) as often as
        they come (or, to `give_way`, raises RateLimited), retries a brief outage a few times,
        then raises Unavailable. A refusal (a 4xx answer such as M_FORBIDDEN) raises
        CannotDeliver."""
        failures = 0
        delay = 1.0
        while True:
            try:
                response = await request(*args, **kwargs)
            except (aiohttp.ClientError, TimeoutError) as error:
                problem: object = error
            else:
                if not isinstance(response, ErrorResponse):
                    return response
                status = _status(response)
                if status == 429 or response.status_code == "M_LIMIT_EXCEEDED":
                    wait_ms = response.retry_after_ms or 1000
                    log.info("matrix: rate limited; waiting %d ms", wait_ms)
                    if give_way:
                        raise RateLimited(wait_ms / 1000)
                    await asyncio.sleep(wait_ms / 1000)
                    continue
                if status is not None and 400 <= status < 500 and status not in (401, 408):
                    raise CannotDeliver(str(response))
                problem = response
            failures += 1
            if failures >= ATTEMPTS:
                raise Unavailable(str(problem))
            await asyncio.sleep(delay)
            delay *= 2

    # --- state in the database ------------------------------------------------------------

    async def _load(self, key: str) -> str | None:
        async with self.app.db.transaction() as db:
            row = await db.get(models.KeyValue, key)
            return row.value if row else None

    async def _save(self, key: str, value: str) -> None:
        async with self.app.db.transaction() as db:
            await db.merge(models.KeyValue(key=key, value=value))


def _parts(text: str) -> list[str]:
    """The text in as few notices as fit: Chinese takes three bytes a character, twice."""
    limit = MAX_LENGTH
    while True:
        parts = split_text(text, limit) if text else []
        if all(len(json.dumps(_notice(p), ensure_ascii=False).encode()) <= MAX_CONTENT_BYTES
               for p in parts):
            return parts
        limit //= 2


def _status(response: ErrorResponse) -> int | None:
    """The HTTP status, if the homeserver answered at all."""
    return response.transport_response.status if response.transport_response else None


def _notice(text: str) -> dict[str, Any]:
    return {
        "msgtype": "m.notice", "body": text, "format": "org.matrix.custom.html",
        "formatted_body": html.escape(text).replace("\n", "<br>"),
    }


def _reaction_key(button: dict[str, str]) -> str:
    return button.get("emoji") or button["label"]


def _localpart(user_id: str) -> str:
    return user_id[1:].split(":")[0]


def _without_reply_fallback(body: str) -> str:
    """A reply's body may start with the quoted message (`> <@a:b> text`) and a blank line."""
    lines = body.split("\n")
    if not lines[0].startswith(">"):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    return "\n".join(lines).lstrip("\n")
