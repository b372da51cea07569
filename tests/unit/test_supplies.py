"""Supplies' pure parts: quantities as typed on phones, units and their conversion, the
catalogue's names, and the days of cover from a history of levels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import ArgError
from commands.supplies import (
    CATALOGUE,
    CATEGORIES,
    UNITS,
    convert_level,
    days_of_cover,
    known_supply,
    parse_amount,
    unit_of,
)

T0 = datetime(2026, 2, 10, 1, 0, tzinfo=UTC)


def history(*points: tuple[float, float]) -> list[tuple[datetime, float]]:
    """(days after T0, level) → (time, level)."""
    return [(T0 + timedelta(days=d), level) for d, level in points]


@pytest.mark.parametrize(
    ("typed", "value", "unit"),
    [
        ("500", 500, None),
        ("５００", 500, None),
        ("500个", 500, "pcs"),
        ("500 个", 500, "pcs"),
        ("1.5吨", 1.5, "t"),
        ("１．５吨", 1.5, "t"),
        ("300斤", 300, "jin"),
        ("2万", 20_000, None),
        ("2万个", 20_000, "pcs"),
        ("1,000", 1000, None),
        (".5L", 0.5, "L"),
        ("500ml", 500, "ml"),
        ("500mL", 500, "ml"),
        ("3KG", 3, "kg"),
        ("0", 0, None),
        ("+5", 5, None),
    ],
)
def test_quantities_as_typed_on_phones(typed, value, unit):
    amount = parse_amount(typed)
    assert amount.value == value
    assert (amount.unit.key if amount.unit else None) == unit


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("-5", "negative"),
        ("－5", "negative"),
        ("−5", "negative"),
        ("abc", "quantity"),
        ("五百", "quantity"),
        ("1e5", "unit"),
        ("500xyz", "unit"),
        ("nan", "quantity"),
        ("", "quantity"),
        ("1.2.3", "unit"),
        ("1000000000", "range"),
    ],
)
def test_bad_quantities_are_refused(typed, problem):
    with pytest.raises(ArgError) as error:
        parse_amount(typed)
    assert error.value.template == problem


def test_units_convert_within_one_dimension_only():
    t, kg, jin, g = (UNITS[k] for k in ("t", "kg", "jin", "g"))
    assert convert_level(1.5, t, kg) == 1500
    assert convert_level(300, jin, kg) == 150
    assert convert_level(500, g, jin) == 1
    assert convert_level(500, UNITS["ml"], UNITS["L"]) == 0.5
    assert convert_level(0.1, UNITS["L"], UNITS["ml"]) == 100  # no float noise
    # Counting words count things of the item's kind; packages convert to nothing.
    assert convert_level(30, UNITS["pairs"], UNITS["pcs"]) == 30
    assert convert_level(3, kg, UNITS["pcs"]) is None
    assert convert_level(3, UNITS["carton"], UNITS["pcs"]) is None
    assert convert_level(3, UNITS["carton"], UNITS["box"]) is None


def test_unit_words_in_chinese_and_english():
    assert unit_of("公斤") is unit_of("KG") is unit_of("千克") is UNITS["kg"]
    assert unit_of("只") is unit_of("件") is unit_of("pcs") is UNITS["pcs"]
    assert unit_of("副") is unit_of("双") is UNITS["pairs"]
    assert unit_of("箱") is unit_of("cartons") is UNITS["carton"]
    assert unit_of("升") is unit_of("l") is unit_of("Ｌ") is UNITS["L"]
    assert unit_of("桶装") is None


def test_catalogue_names_in_chinese_and_english():
    for names, key in [
        (("口罩", "masks", "Mask", "N95", "Ｎ９５", "医用口罩"), "masks"),
        (("消毒液", "disinfectant", "84"), "disinfectant"),
        (("酒精", "alcohol", "75%酒精"), "alcohol"),
        (("防护服", "protective suits", "protective-suits", "suits"), "protective-suits"),
        (("手套", "gloves"), "gloves"),
        (("蔬菜", "vegetables", "菜"), "vegetables"),
        (("米", "面", "粮", "粮食", "rice", "grain"), "grain"),
        (("油", "食用油", "cooking oil"), "oil"),
        (("肉", "猪肉", "meat"), "meat"),
        (("蛋", "鸡蛋", "eggs"), "eggs"),
        (("奶", "牛奶", "milk"), "milk"),
        (("药", "药品", "medicine"), "medicine"),
    ]:
        assert {known_supply(name).key for name in names} == {key}, names
    assert known_supply("体温枪") is None


def test_catalogue_is_consistent():
    assert all(s.category in CATEGORIES and s.unit in UNITS for s in CATALOGUE)
    assert {s.category for s in CATALOGUE} >= {"protective", "disinfection", "food", "medicine"}


def test_days_of_cover_from_the_current_run_of_reports_going_down():
    # 200 a day: 600 last three days.
    assert days_of_cover(history((0, 1000), (1, 800), (2, 600))) == 3.0
    # A delivery starts a new run: only what came after it counts.
    assert days_of_cover(history((0, 1000), (1, 200), (2, 2000), (3, 1500))) == 3.0
    # Staying level is part of a run (a slower rate): 300 used in 3 days, 700 left.
    assert days_of_cover(history((0, 1000), (1, 800), (2, 800), (3, 700))) == 7.0
    assert days_of_cover(history((0, 450), (1.5, 300))) == 3.0


def test_days_of_cover_unknown_without_a_rate_of_use():
    assert days_of_cover([]) is None
    assert days_of_cover(history((0, 500))) is None
    assert days_of_cover(history((0, 500), (1, 500))) is None  # nothing used
    assert days_of_cover(history((0, 500), (1, 800))) is None  # a delivery, no run yet
    assert days_of_cover(history((0, 500), (0.1, 400))) is None  # too short to tell
    assert days_of_cover(history((0, 500), (1, 0))) == 0.0
