"""Self-test of the real-Synapse harness in tests/servers/synapse.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from nio import (
    AsyncClient,
    JoinResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMessageText,
    RoomSendError,
    RoomSendResponse,
    SyncResponse,
)

from tests.servers.synapse import Synapse, make_user_client, synapse, synapse_factory

__all__ = ["synapse", "synapse_factory"]  # pytest fixtures, requested by name below

pytestmark = pytest.mark.slow


async def _send_text(
    client: AsyncClient, room_id: str, body: str
) -> RoomSendResponse | RoomSendError:
    content = {"msgtype": "m.text", "body": body}
    return await client.room_send(room_id, "m.room.message", content)


async def _sync(client: AsyncClient, timeout_ms: int = 0) -> SyncResponse:
    response = await client.sync(timeout=timeout_ms)
    assert isinstance(response, SyncResponse), response
    return response


async def _wait_for_text(client: AsyncClient, room_id: str, body: str) -> None:
    """Sync until ``body`` shows up in ``room_id``'s timeline (15 s at most)."""
    try:
        async with asyncio.timeout(15):
            while True:
                response = await _sync(client, timeout_ms=1000)
                room = response.rooms.join.get(room_id)
                if room and any(
                    isinstance(event, RoomMessageText) and event.body == body
                    for event in room.timeline.events
                ):
                    return
    except TimeoutError:
        pytest.fail(f"{client.user_id} never saw {body!r} in {room_id}")


@pytest.mark.asyncio
async def test_two_users_exchange_a_message(synapse: Synapse) -> None:
    assert synapse.server_name == "localhost"
    alice = await make_user_client(synapse, "selftest-alice")
    bob = await make_user_client(synapse, "selftest-bob")
    try:
        assert alice.user_id == "@selftest-alice:localhost"
        await _sync(alice)  # start alice's timeline before bob speaks

        created = await alice.room_create(name="self-test")
        assert isinstance(created, RoomCreateResponse), created
        invited = await alice.room_invite(created.room_id, bob.user_id)
        assert isinstance(invited, RoomInviteResponse), invited
        joined = await bob.join(created.room_id)
        assert isinstance(joined, JoinResponse), joined

        sent = await _send_text(bob, created.room_id, "hello from bob")
        assert isinstance(sent, RoomSendResponse), sent
        await _wait_for_text(alice, created.room_id, "hello from bob")
    finally:
        await asyncio.gather(alice.close(), bob.close())


@pytest.mark.asyncio
async def test_restart_keeps_users_and_port(synapse_factory: Callable[..., Synapse]) -> None:
    server = synapse_factory()
    url = server.url
    client = await make_user_client(server, "restarter")
    try:
        await _sync(client)
        await asyncio.to_thread(server.restart)
        assert server.running and server.url == url
        await _sync(client)  # same access token, same database
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_low_message_rate_limit_returns_429(synapse_factory: Callable[..., Synapse]) -> None:
    server = synapse_factory(rc_message=(0.1, 2))
    client = await make_user_client(server, "chatty")
    try:
        created = await client.room_create()
        assert isinstance(created, RoomCreateResponse), created
        replies = [await _send_text(client, created.room_id, f"msg {n}") for n in range(4)]
        limited = [r for r in replies if isinstance(r, RoomSendError)]
        assert limited, replies
        assert limited[0].status_code == "M_LIMIT_EXCEEDED"
        assert limited[0].retry_after_ms
    finally:
        await client.close()
