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
    ExistingGrid,
    ExistingHousehold,
    Flag,
    GridCode,
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
    Private,
    Qty,
    ShiftRef,
    Text,
    When,
    Zone,
    convert,
)
from bot.context import Actions, Context, JobContext
from bot.dispatch import usable_here
from bot.errors import ArgError, Confirm, Refused, Reject
from bot.registry import REGISTRY, Command, command, digest_section, hand_back, job, on
from bot.roles import Role, Where

__all__ = [
    "REGISTRY", "Actions", "Also", "ArgError", "Celsius", "Choice", "Clock", "Code", "Command", "Confirm",
    "Context", "Converter", "Date", "ErrandRef", "ExistingGrid", "ExistingHousehold", "Flag", "GridCode", "GridRef", "Hours", "HouseholdCode",
    "HouseholdRef", "Int", "Interval", "JobContext", "KeyPersonRef", "NewGridCode", "PersonRef", "Plate",
    "Private", "Qty", "Refused", "Reject", "Role", "ShiftRef", "Text", "When", "Where", "Zone",
    "command", "convert", "digest_section", "hand_back", "job", "on", "usable_here",
]
