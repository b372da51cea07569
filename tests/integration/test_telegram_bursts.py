"""A burst in one Telegram group, through the real transport and the local Bot API server:
every command answered, in order, with its buttons, while the group never gets more than
20 messages in any rolling minute (the time it takes is measured in bench/fanout.py)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.test_telegram import (
    G1,
    WANG,
    config_for,
    handled,
    populate,
    running,
    setup_grids,
)
from tests.servers.botapi import FakeBotAPI, botapi

__all__ = ["botapi"]  # the fixture, used by name

BURST = 40


def most_in_a_minute(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 60) for start in times)


async def test_forty_errands_at_once_are_all_answered_merged_in_order_with_their_buttons(
    botapi: FakeBotAPI, tmp_path: Path
) -> None:
    populate(botapi)
    async with running(config_for(botapi, tmp_path)):
        await setup_grids(botapi)
        before = len(botapi.sent(G1))
        for n in range(1, BURST + 1):
            botapi.user_says(WANG, G1, f"/errand 帮忙买菜 {n}")
        await handled(botapi, timeout=120)
        burst = botapi.sent(G1)[before:]

        # Every errand answered once, in the order posted.
        numbers = [int(n) for m in burst for n in re.findall(r"新代办 E(\d+)：", m["text"])]
        assert numbers == list(range(1, BURST + 1))
        # Far fewer messages than commands: what waited for the group's budget went merged.
        assert len(burst) <= 20
        assert most_in_a_minute([m["at"] for m in botapi.sent(G1)]) <= 20
        merged = [m for m in burst if m["text"].count("新代办") > 1]
        assert merged
        # Each item names the command it answers; one button per item, naming its errand;
        # pressing one claims that errand.
        for message in merged:
            items = message["text"].split("\n\n")
            assert all(item.startswith("↩ @wang_w /errand\n新代办 E") for item in items)
            items = re.findall(r"新代办 E(\d+)：", message["text"])
            buttons = [b for row in message["reply_markup"]["inline_keyboard"] for b in row]
            assert [(b["text"], b["callback_data"]) for b in buttons] == [
                (f"✋ 认领 E{n}", f"/claim E{n}") for n in items
            ]
        item = re.findall(r"新代办 E(\d+)：", merged[0]["text"])[-1]
        sent = len(botapi.sent(G1))
        botapi.user_presses(WANG, merged[0], f"/claim E{item}")
        await handled(botapi, timeout=60)
        assert f"@wang_w 认领了 E{item}" in botapi.sent(G1)[sent]["text"]

