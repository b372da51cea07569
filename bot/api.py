"""The small API that command modules use: declare, read arguments, answer."""

from bot.args import (
    Also,
    Celsius,
    Choice,
    Clock,
    Code,
    Converter,
    Date,
    ErrandRef,
    Flag,
    GridRef,
    Hours,
    HouseholdCode,
    HouseholdRef,
    Int,
    Interval,
    KeyPersonRef,
    NewGridCode,
    PersonRef,
    Plate,
    Qty,
    ShiftRef,
    Text,
    When,
    Zone,
    convert,
)
from bot.context import Actions, Context, JobContext
from bot.errors import ArgError, Refused, Reject
from bot.registry import REGISTRY, Command, command, digest_section, hand_back, job, on
from bot.roles import Role, Where


def usable_here(ctx: Context, cmd: Command) -> bool:
    """Whether the caller may use `cmd` in this chat (for /help and /start)."""
    return ctx.app.dispatcher.allows(ctx, cmd)


__all__ = [
    "REGISTRY", "Actions", "Also", "ArgError", "Celsius", "Choice", "Flag", "Clock", "Code", "Command", "Converter", "convert", "Context", "Date",
    "ErrandRef", "GridRef", "Hours", "HouseholdCode", "HouseholdRef", "Int", "Interval", "JobContext",
    "KeyPersonRef", "NewGridCode", "PersonRef", "Plate", "Qty", "Refused", "Reject", "Role",
    "ShiftRef", "Text", "When", "Where", "Zone", "command", "digest_section", "hand_back", "job", "on", "usable_here",
]
