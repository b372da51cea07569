"""/history: the audit trail of one item (E7, S5, K12, N3), from the audit log every command and
scheduled job writes."""

from __future__ import annotations

from typing import Annotated

from sqlalchemy import String, cast, or_, select

from bot.api import ArgError, Context, Converter, Reject, Role, Where, command
from bot.args import Item, Numbered
from storage import models

ITEMS: dict[str, tuple[type[Numbered], str]] = {
    "E": (models.Errand, "errands"),
    "S": (models.Shift, "shifts"),
    "K": (models.KeyPerson, "key_persons"),
    "N": (models.SupplyNeed, "supply_needs"),
}
SHOWN = 20


class AnyItem(Converter):
    """`E7`, `S5`, `K12` or `N3`: an errand, a shift, a key person or a priority supply
    request of this community."""

    placeholder = "E|S|K|N"

    async def convert(self, ctx: Context, word: str) -> tuple[str, Numbered]:
        prefix = word[:1].upper()
        if prefix not in ITEMS:
            raise ArgError("any_item", word=word)
        return prefix, await Item(prefix, ITEMS[prefix][0]).convert(ctx, word)


@command("history", role=Role.MEMBER, where=Where.COMMUNITY, aliases=("记录",))
async def history(ctx: Context, item: Annotated[tuple[str, Numbered], AnyItem()]) -> None:
    """The audit trail of one item: who did what, when."""
    prefix, row = item
    ref = f"{prefix}{row.number}"
    # An item's history is its grid's: shown in that grid's chat, or elsewhere (a direct
    # chat, the HQ chat) to those who work in that grid or above it.
    if ctx.chat.grid_id is not None and not ctx.chat.is_direct:
        if row.grid_id != ctx.chat.grid_id:
            raise Reject("history/elsewhere", item=ref)
    elif ctx.role_in(await ctx.db.get(models.Grid, row.grid_id)) < Role.MEMBER:
        raise Reject("history/elsewhere", item=ref)
    table = ITEMS[prefix][1]
    # Entries that name the item, or (scheduled jobs) changed its row. The JSON is matched as
    # text: the same serialisation is stored on SQLite and PostgreSQL.
    refs, changes = cast(models.AuditEntry.refs, String), cast(models.AuditEntry.changes, String)
    entries = (
        await ctx.db.execute(
            select(models.AuditEntry, models.Person)
            .outerjoin(models.Person, models.Person.id == models.AuditEntry.person_id)
            .where(
                or_(models.AuditEntry.community_id == row.community_id,
                    models.AuditEntry.community_id.is_(None)),
                or_(refs.like(f'%"{ref}"%'),
                    changes.like(f'%"table": "{table}", "id": {row.id},%')),
            )
            .order_by(models.AuditEntry.id.desc())
            .limit(SHOWN)
        )
    ).all()
    lines = [
        {"at": entry.at, "who": person.label if person else None, "command": entry.command,
         "states": _state_changes(entry.changes, table, row.id)}
        for entry, person in reversed(entries)
    ]
    ctx.reply("history/trail", item=ref, lines=lines, limit=SHOWN)


def _state_changes(changes: list[dict], table: str, row_id: int) -> list[tuple[str, str]]:
    """The item's state moves (`open → claimed`): shown anywhere, as they carry nothing private."""
    moves = []
    for change in changes:
        if change["table"] == table and change["id"] == row_id:
            before, after = change.get("before") or {}, change.get("after") or {}
            if "state" in after:
                moves.append((before.get("state") or "", after["state"]))
    return moves
