"""Self-test of tests/servers/botapi.py against the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.servers.botapi import FakeBotAPI, botapi

__all__ = ["botapi"]  # fixture used below by name

ALICE, BOB = 1001, 1002
GROUP = -1001234567890  # a supergroup
CSV = b"household,status\n3-2-101,ok\n3-2-102,fever\n"


@contextlib.asynccontextmanager
async def running_bot(
    api: FakeBotAPI,
    *handlers: BaseHandler[Any, Any, Any],
    rate_limiter: AIORateLimiter | None = None,
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """A PTB application polling ``api``, run the way gridbot runs it: inside our loop."""
    builder = ApplicationBuilder().token(api.token).base_url(api.base_url)
    builder = builder.base_file_url(api.base_file_url)
    if rate_limiter:
        builder = builder.rate_limiter(rate_limiter)
    app = builder.build()
    app.add_handlers(handlers)
    await app.initialize()
    assert app.updater
    await app.updater.start_polling()
    await app.start()
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


@pytest_asyncio.fixture
async def bot(botapi: FakeBotAPI) -> AsyncIterator[Bot]:
    """A bare PTB Bot (no polling) on the server, with Alice, Bob and a group."""
    botapi.add_user(ALICE, "Alice", "alice_v")
    botapi.add_user(BOB, "Bob")
    botapi.add_group(GROUP, "Grid 1")
    async with Bot(botapi.token, base_url=botapi.base_url, base_file_url=botapi.base_file_url) as b:
        yield b


async def pong(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message
    await update.effective_message.reply_text(
        "<b>pong</b>", parse_mode=ParseMode.HTML, do_quote=True
    )


def _api_client(api: FakeBotAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{api.base_url}{api.token}/", timeout=10)


async def _get_updates(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    body = (await http.post("getUpdates", json=params)).json()
    assert body["ok"], body
    return list(body["result"])


def _ids(updates: list[dict[str, Any]]) -> list[int]:
    return [update["update_id"] for update in updates]


async def test_ptb_polls_and_answers_a_group_command(bot: Bot, botapi: FakeBotAPI) -> None:
    async with running_bot(botapi, CommandHandler("ping", pong)):
        first = botapi.user_says(ALICE, GROUP, "/ping")
        addressed = botapi.user_says(ALICE, GROUP, f"/ping@{botapi.bot_username} now")
        # Privacy mode: neither reaches the bot, as on Telegram.
        assert botapi.user_says(ALICE, GROUP, "/ping@some_other_bot") is None
        assert botapi.user_says(ALICE, GROUP, "just chatting") is None
        replies = await botapi.wait_for_sent(2, chat_id=GROUP)
    assert first and addressed and addressed > first

    assert [r["text"] for r in replies] == ["<b>pong</b>", "<b>pong</b>"]
    assert [r["parse_mode"] for r in replies] == ["HTML", "HTML"]
    message = replies[0]["message"]
    assert message["text"] == "pong"
    assert message["entities"] == [{"type": "bold", "offset": 0, "length": 4}]
    assert message["from"]["username"] == botapi.bot_username
    assert message["reply_to_message"]["text"] == "/ping"
    # PTB's start-up (after the `bot` fixture's own getMe), and stopping confirms all it fetched.
    assert [c.method for c in botapi.calls()[1:4]] == ["getMe", "deleteWebhook", "getUpdates"]
    assert botapi.pending_updates() == 0
    assert len(botapi.sent()) == 2


async def test_unconfirmed_updates_are_redelivered_to_a_new_poller(
    bot: Bot, botapi: FakeBotAPI
) -> None:
    first = botapi.user_says(ALICE, GROUP, "/ping")
    second = botapi.user_says(BOB, GROUP, "/ping")
    assert first and second
    async with _api_client(botapi) as http:
        fetched = await _get_updates(http)
        assert _ids(fetched) == [first, second]
        # A poller that crashes before confirming gets the same updates again.
        assert _ids(await _get_updates(http)) == [first, second]
        # offset = first + 1 confirms the first update only.
        assert _ids(await _get_updates(http, offset=first + 1)) == [second]
        assert botapi.pending_updates() == 1

    async with running_bot(botapi, CommandHandler("ping", pong)):
        [reply] = await botapi.wait_for_sent(1)
    assert reply["message"]["reply_to_message"]["message_id"] == fetched[1]["message"]["message_id"]
    assert len(botapi.sent()) == 1
    assert botapi.pending_updates() == 0


async def test_long_poll_waits_and_a_new_poller_terminates_the_old(
    bot: Bot, botapi: FakeBotAPI
) -> None:
    async with _api_client(botapi) as http:
        poll = asyncio.create_task(_get_updates(http, timeout=5))
        await asyncio.sleep(0.3)
        assert not poll.done()
        update_id = botapi.user_says(ALICE, ALICE, "hello")
        assert update_id
        updates = await asyncio.wait_for(poll, 2)
        assert _ids(updates) == [update_id]
        assert updates[0]["message"]["chat"] == {
            "id": ALICE,
            "type": "private",
            "first_name": "Alice",
            "username": "alice_v",
        }
        assert isinstance(updates[0]["message"]["date"], int)

        stale = asyncio.create_task(
            http.post("getUpdates", json={"offset": update_id + 1, "timeout": 5})
        )
        await asyncio.sleep(0.3)
        assert await _get_updates(http, offset=update_id + 1) == []
        response = await stale
    assert response.status_code == 409
    assert "terminated by other getUpdates request" in response.json()["description"]


async def test_get_updates_parameters_and_refusals(bot: Bot, botapi: FakeBotAPI) -> None:
    ids = [botapi.user_says(ALICE, GROUP, f"/ping {n}") for n in range(4)]
    async with _api_client(botapi) as http:
        assert _ids(await _get_updates(http, limit=2)) == ids[:2]
        # A negative offset keeps only the last -offset updates and forgets the rest.
        assert _ids(await _get_updates(http, offset=-1)) == ids[3:]
        assert botapi.pending_updates() == 1
        # allowed_updates lasts until changed and filters updates created afterwards.
        assert _ids(await _get_updates(http, offset=ids[3] + 1, allowed_updates=["message"])) == []
        botapi.user_says(ALICE, GROUP, "/menu")
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Claim", callback_data="claim:E7")]])
        offer = await bot.send_message(GROUP, "E7", reply_markup=keyboard)
        botapi.user_presses(BOB, (GROUP, offer.message_id), "claim:E7")
        assert [list(u)[1] for u in await _get_updates(http)] == ["message"]

        assert (await http.post("setWebhook", json={"url": "https://example.org/hook"})).is_success
        conflict = await http.post("getUpdates")
        assert conflict.status_code == 409 and "webhook is active" in conflict.json()["description"]
        assert (await http.post("deleteWebhook")).is_success

        assert (await http.post("sendSticker")).json() == {
            "ok": False,
            "error_code": 404,
            "description": "Not Found",
        }
        wrong_token = await http.post(f"{botapi.base_url}1:wrong/getMe")
        assert wrong_token.status_code == 401


async def test_polling_catches_up_after_a_server_outage(bot: Bot, botapi: FakeBotAPI) -> None:
    async with running_bot(botapi, CommandHandler("ping", pong)):
        base_url = botapi.base_url
        await botapi.stop()
        botapi.user_says(ALICE, GROUP, "/ping")  # typed while the bot cannot reach Telegram
        await asyncio.sleep(0.5)
        await botapi.start()
        assert botapi.base_url == base_url
        [reply] = await botapi.wait_for_sent(1, timeout=10)
    assert reply["text"] == "<b>pong</b>"


async def test_rate_limiter_retries_after_an_injected_429(bot: Bot, botapi: FakeBotAPI) -> None:
    botapi.fail_next("sendMessage", status=429, retry_after=1)
    limiter = AIORateLimiter(max_retries=2)  # PTB's default is 0: no retry at all
    async with running_bot(botapi, CommandHandler("ping", pong), rate_limiter=limiter):
        botapi.user_says(ALICE, GROUP, "/ping")
        [reply] = await botapi.wait_for_sent(1, timeout=10)
    assert reply["text"] == "<b>pong</b>"
    attempts = botapi.calls("sendMessage")
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 1.0


async def test_injected_faults_surface_as_ptb_errors(bot: Bot, botapi: FakeBotAPI) -> None:
    botapi.fail_next("sendMessage", status=429, retry_after=7)
    with pytest.raises(RetryAfter, match="Retry in 7"):
        await bot.send_message(GROUP, "x")
    botapi.fail_next("sendMessage", status=502)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(GROUP, "x")
    assert (await bot.send_message(GROUP, "x")).text == "x"
    assert [c.status for c in botapi.calls("sendMessage")] == [429, 502, 200]


async def test_dm_to_a_user_who_never_started_the_bot_is_forbidden(
    bot: Bot, botapi: FakeBotAPI
) -> None:
    async def remind(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_user and update.effective_message
        try:
            await context.bot.send_message(update.effective_user.id, "your reminder")
        except Forbidden as error:
            await update.effective_message.reply_text(f"cannot DM you: {error.message}")

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message
        await update.effective_message.reply_text("hi")

    async with running_bot(
        botapi, CommandHandler("remind", remind), CommandHandler("start", start)
    ):
        botapi.user_says(ALICE, GROUP, "/remind")
        [refusal] = await botapi.wait_for_sent(1, chat_id=GROUP)
        assert refusal["text"] == (
            "cannot DM you: Forbidden: bot can't initiate conversation with a user"
        )
        botapi.user_says(ALICE, ALICE, "/start")  # Alice opens the private chat
        await botapi.wait_for_sent(1, chat_id=ALICE)
        botapi.user_says(ALICE, GROUP, "/remind")
        await botapi.wait_for_sent(lambda m: m["text"] == "your reminder", chat_id=ALICE)
    assert [c.status for c in botapi.calls("sendMessage")] == [403, 200, 200, 200]


async def test_document_upload_and_download(bot: Bot, botapi: FakeBotAPI) -> None:
    async def export(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message
        await update.effective_message.reply_document(
            CSV, filename="export.csv", caption="<b>E7</b> errands", parse_mode=ParseMode.HTML
        )

    async def count_lines(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message and update.effective_message.document
        document = update.effective_message.document
        data = await (await document.get_file()).download_as_bytearray()
        lines = data.count(b"\n")
        await update.effective_message.reply_text(f"{document.file_name}: {lines}")

    handlers = (CommandHandler("export", export), MessageHandler(filters.Document.ALL, count_lines))
    async with running_bot(botapi, *handlers) as app:
        botapi.user_says(ALICE, GROUP, "/export")
        [sent] = await botapi.wait_for_sent(1)
        assert sent["document_name"] == "export.csv"
        assert sent["document_bytes"] == CSV
        assert sent["caption"] == "<b>E7</b> errands"
        assert sent["message"]["caption"] == "E7 errands"
        # The bot's own upload can be fetched back through getFile and the file URL.
        file = await app.bot.get_file(sent["message"]["document"]["file_id"])
        assert await file.download_as_bytearray() == CSV

        # A user's upload reaches the bot (the caption is a command, so privacy mode lets
        # it through), which downloads it.
        botapi.user_sends_document(ALICE, GROUP, "register.csv", CSV, caption="/household import")
        await botapi.wait_for_sent(lambda m: m["text"] == "register.csv: 3")


async def test_callback_query_round_trip(bot: Bot, botapi: FakeBotAPI) -> None:
    async def menu(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message
        button = InlineKeyboardButton("Claim E7", callback_data="claim:E7")
        await update.effective_message.reply_text(
            "E7: buy medicine", reply_markup=InlineKeyboardMarkup([[button]])
        )

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query and query.data == "claim:E7"
        await query.answer("claimed")
        await query.edit_message_text(f"E7 claimed by {query.from_user.first_name}")

    async with running_bot(botapi, CommandHandler("menu", menu), CallbackQueryHandler(pressed)):
        botapi.user_says(ALICE, GROUP, "/menu")
        [offer] = await botapi.wait_for_sent(1)
        assert offer["reply_markup"] == {
            "inline_keyboard": [[{"text": "Claim E7", "callback_data": "claim:E7"}]]
        }
        with pytest.raises(ValueError, match="no button"):
            botapi.user_presses(BOB, offer, "claim:E8")
        query_id = botapi.user_presses(BOB, offer, "claim:E7")
        await botapi.wait_for_sent(lambda m: m["text"] == "E7 claimed by Bob")
        await botapi.wait_until(lambda: bool(botapi.answered_callbacks), what="an answer")

    assert botapi.answered_callbacks == [
        {
            "callback_query_id": query_id,
            "text": "claimed",
            "show_alert": False,
            "url": None,
            "cache_time": 0,
        }
    ]
    # Editing the text without reply_markup drops the keyboard, as on Telegram.
    assert offer["reply_markup"] is None
    assert offer["message"]["edit_date"]
    with pytest.raises(BadRequest, match="(?i)query is too old"):
        await bot.answer_callback_query(query_id)  # a query is answered once


async def test_html_and_length_rules(bot: Bot, botapi: FakeBotAPI) -> None:
    # PTB strips "Bad Request: " and lower-cases the rest of Telegram's description.
    html = ParseMode.HTML
    with pytest.raises(BadRequest, match='parse entities: unsupported start tag "p" at byte off'):
        await bot.send_message(GROUP, "<p>x</p>", parse_mode=html)
    with pytest.raises(BadRequest, match="can't find end tag corresponding to start tag"):
        await bot.send_message(GROUP, "<b>unclosed", parse_mode=html)
    with pytest.raises(BadRequest, match='unsupported start tag "" at byte offset 5'):
        await bot.send_message(GROUP, "37.3 < t", parse_mode=html)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(GROUP, "x" * 4097)

    at_limit = await bot.send_message(GROUP, "<i>AT&T &lt;3</i>" + "y" * 4089, parse_mode=html)
    assert at_limit.text.startswith("AT&T <3") and len(at_limit.text) == 4096
    plain = await bot.send_message(GROUP, "same")
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("same", GROUP, plain.message_id)
    assert botapi.user_says(ALICE, ALICE, "my own words")  # message 1 of Alice's chat
    with pytest.raises(BadRequest, match="Message can't be edited"):
        await bot.edit_message_text("changed", ALICE, 1)


async def test_commands_pins_and_chat_actions(bot: Bot, botapi: FakeBotAPI) -> None:
    await bot.set_my_commands([BotCommand("ping", "check the bot")])
    await bot.set_my_commands([("claim", "take an errand")], scope=BotCommandScopeChat(GROUP))
    assert botapi.commands() == [{"command": "ping", "description": "check the bot"}]
    group_commands = await bot.get_my_commands(scope=BotCommandScopeChat(GROUP))
    assert [c.command for c in group_commands] == ["claim"]
    assert botapi.command_scopes() == [
        ({"type": "default"}, ""),
        ({"type": "chat", "chat_id": GROUP}, ""),
    ]
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([("Claim", "upper case is refused")])
    await bot.delete_my_commands()
    assert botapi.commands() == []

    message = await bot.send_message(GROUP, "digest")
    assert await bot.pin_chat_message(GROUP, message.message_id)
    assert botapi.pinned(GROUP) == message.message_id
    assert await bot.send_chat_action(GROUP, ChatAction.TYPING)
    with pytest.raises(Forbidden):
        await bot.send_chat_action(BOB, ChatAction.TYPING)  # Bob never started the bot
