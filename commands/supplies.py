"""Supplies (seed point 8): each grid reports its levels of the front line's protective and
disinfection supplies and of residents' food; a leader sets minimums; falling below one
alerts the grid's leaders once; priority requests (`N<n>`) stay in the digest until met.

/supply, /supply min, /supply item, /supplies, /need, /need done, /need cancel; the digest
section.

Items. A grid's item is recognised by name or alias, in Chinese or English, from the
catalogue below (口罩 = masks = mask) or from aliases a leader gave it; `/supply 口罩 500 个`
and `/supply masks 500` report the same item. A name the catalogue does not know is taken
as typed, in the category "other"; a leader may give it a category, aliases and a unit
(`/supply item 体温枪 category=medicine alias=测温枪,thermometer`).

Units. Each item has one unit and its levels are kept in it. Weights convert among
themselves (吨/t, 公斤/kg, 斤, 克/g), and so do volumes (升/L, 毫升/ml). Counting words
(个 只 件 支 份 副 双 套 pcs pairs sets …) all count whole things of the item's own kind, so
they stand for one another; packages (箱 盒 包 袋 瓶 桶) are of unknown size and convert to
nothing else. A unit that cannot be converted to the item's is refused, naming the item's.

Low alerts. An item is low while its latest level is below its minimum. The report that
makes it low alerts the grid's leaders by direct message, once: `SupplyItem.low_since`
marks the alert (set by a conditional UPDATE, so two reports at once alert once) and is
cleared when a level at or above the minimum comes in, which re-arms the alert.

Days of cover. From the current run of reports: the latest reports that go down (or stay
level) one after another; a report that goes up — a delivery — starts a new run. The
rate of use is what the run used over the time it spans; cover = latest level / rate,
counted from the latest report (shown beside it). A run shorter than MIN_RUN is too short
to tell a rate from a correction.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from bot.api import (
    Actions,
    ArgError,
    Choice,
    Context,
    Converter,
    Refused,
    Reject,
    Role,
    Text,
    Where,
    command,
    digest_section,
)
from bot.args import Item
from storage import models
from storage.queries import grid_chats, load, next_number

CATEGORIES = ("protective", "disinfection", "food", "medicine", "other")
FRONT_LINE = ("protective", "disinfection")
MAX_QUANTITY = 100_000_000
MAX_NAME = 40
HISTORY = 20  # reports per item read for the days of cover
MIN_RUN = timedelta(hours=6)


# --- units ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """`key` is what SupplyItem.unit holds; `factor` is in the dimension's base unit (kg, L,
    one thing); a package is a dimension of its own."""

    key: str
    dimension: str
    factor: float
    zh: str
    en: str
    words: tuple[str, ...] = ()

    def label(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


UNITS = {
    unit.key: unit
    for unit in (
        Unit("t", "mass", 1000, "吨", "t", ("吨", "公吨", "ton", "tons", "tonne", "tonnes")),
        Unit("kg", "mass", 1, "公斤", "kg", ("公斤", "千克", "kgs", "kilo", "kilos", "kilogram",
                                           "kilograms")),
        Unit("jin", "mass", 0.5, "斤", "jin", ("斤", "市斤")),
        Unit("g", "mass", 0.001, "克", "g", ("克", "gram", "grams")),
        Unit("L", "volume", 1, "升", "L", ("升", "公升", "litre", "litres", "liter", "liters")),
        Unit("ml", "volume", 0.001, "毫升", "ml", ("毫升",)),
        Unit("pcs", "count", 1, "个", "pcs", ("个", "只", "件", "支", "片", "枚", "份", "顶", "根",
                                            "张", "pc", "piece", "pieces")),
        Unit("pairs", "count", 1, "副", "pairs", ("副", "双", "pair")),
        Unit("sets", "count", 1, "套", "sets", ("套", "set")),
        Unit("carton", "carton", 1, "箱", "cartons", ("箱", "cartons", "case", "cases")),
        Unit("box", "box", 1, "盒", "boxes", ("盒", "boxes")),
        Unit("pack", "pack", 1, "包", "packs", ("包", "packs", "packet", "packets")),
        Unit("bag", "bag", 1, "袋", "bags", ("袋", "bags", "sack", "sacks")),
        Unit("bottle", "bottle", 1, "瓶", "bottles", ("瓶", "bottles")),
        Unit("drum", "drum", 1, "桶", "drums", ("桶", "drums", "barrel", "barrels")),
    )
}


def _fold(word: str) -> str:
    """How names and units are compared: full-width folded (５００ → 500), lower case, without
    spaces, hyphens or underscores."""
    return re.sub(r"[\s\-_]", "", unicodedata.normalize("NFKC", word)).lower()


_UNIT_WORDS = {
    _fold(word): unit for unit in UNITS.values() for word in (unit.key, *unit.words)
}


def unit_of(word: str) -> Unit | None:
    """The unit a word names (`斤`, `KG`, `箱`), or None."""
    return _UNIT_WORDS.get(_fold(word))


def convert_level(value: float, unit: Unit, to: Unit) -> float | None:
    """`value` in `unit` expressed in `to`; None if one cannot be converted to the other."""
    if unit.dimension != to.dimension:
        return None
    return round(value * unit.factor / to.factor, 6)


# --- quantities -------------------------------------------------------------------------

_AMOUNT = re.compile(
    r"(?P<sign>[+\-−]?)(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"\s*(?P<times>[万千])?\s*(?P<unit>.*)"
)


@dataclass(frozen=True)
class Amount:
    """A quantity as typed, with the unit glued to it (`500个`, `1.5吨`), if any."""

    value: float
    unit: Unit | None = None


def parse_amount(word: str) -> Amount:
    """`500`, `５００`, `500个`, `1.5吨`, `2万`, `1,000`; negative or non-numeric refused."""
    text = unicodedata.normalize("NFKC", word).strip()
    match = _AMOUNT.fullmatch(text)
    if not match:
        raise ArgError("quantity", word=word)
    if match["sign"] in ("-", "−"):
        raise ArgError("negative", word=word)
    value = float(match["number"].replace(",", "")) * {"万": 10_000, "千": 1000}.get(
        match["times"] or "", 1
    )
    if value > MAX_QUANTITY:
        raise ArgError("range", word=word, low=0, high=MAX_QUANTITY)
    unit = None
    if match["unit"]:
        unit = unit_of(match["unit"])
        if unit is None:
            raise ArgError("unit", word=match["unit"], units=_unit_examples())
    return Amount(round(value, 6), unit)


def _unit_examples() -> list[str]:
    return ["个", "副", "套", "箱", "盒", "瓶", "公斤", "斤", "吨", "升", "kg", "L"]


class Quantity(Converter):
    """A quantity, maybe with its unit glued on (`500个`)."""

    by_name = True
    placeholder = "qty"

    async def convert(self, ctx: Context, word: str) -> Amount:
        return parse_amount(word)


class UnitWord(Converter):
    """A unit word after the quantity (`500 个`)."""

    by_name = True
    placeholder = "unit"

    async def convert(self, ctx: Context, word: str) -> Unit:
        unit = unit_of(word)
        if unit is None:
            raise ArgError("unit", word=word, units=_unit_examples())
        return unit


# --- the catalogue ----------------------------------------------------------------------


@dataclass(frozen=True)
class Supply:
    """A known item: its key (SupplyItem.name), category, default unit and names."""

    key: str
    category: str
    unit: str
    zh: str
    en: str
    aliases: tuple[str, ...] = ()

    def label(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


CATALOGUE = (
    Supply("masks", "protective", "pcs", "口罩", "masks",
           ("mask", "医用口罩", "外科口罩", "n95", "kn95", "n95口罩")),
    Supply("protective-suits", "protective", "sets", "防护服", "protective suits",
           ("防护衣", "隔离衣", "suit", "suits", "protective suit", "coverall", "coveralls")),
    Supply("gloves", "protective", "pairs", "手套", "gloves",
           ("glove", "医用手套", "乳胶手套", "一次性手套")),
    Supply("goggles", "protective", "pcs", "护目镜", "goggles", ("goggle", "眼罩")),
    Supply("face-shields", "protective", "pcs", "防护面屏", "face shields",
           ("面屏", "面罩", "face shield", "faceshield", "faceshields")),
    Supply("disinfectant", "disinfection", "L", "消毒液", "disinfectant",
           ("消毒水", "消毒剂", "84", "84消毒液", "disinfectants", "bleach")),
    Supply("alcohol", "disinfection", "L", "酒精", "alcohol",
           ("75%酒精", "医用酒精", "乙醇", "ethanol")),
    Supply("hand-sanitiser", "disinfection", "bottle", "洗手液", "hand sanitiser",
           ("免洗洗手液", "sanitiser", "sanitizer", "hand sanitizer")),
    Supply("vegetables", "food", "kg", "蔬菜", "vegetables",
           ("菜", "青菜", "蔬菜包", "vegetable", "veg", "veggies")),
    Supply("grain", "food", "kg", "粮食", "grain",
           ("米", "面", "粮", "大米", "面粉", "挂面", "面条",
            "rice", "flour", "noodles", "grains")),
    Supply("oil", "food", "L", "食用油", "cooking oil", ("油", "cooking oil", "cookingoil")),
    Supply("meat", "food", "kg", "肉", "meat", ("肉类", "猪肉", "牛肉", "鸡肉", "pork", "beef",
                                               "chicken")),
    Supply("eggs", "food", "kg", "鸡蛋", "eggs", ("蛋", "egg")),
    Supply("milk", "food", "carton", "牛奶", "milk", ("奶",)),
    Supply("medicine", "medicine", "box", "药品", "medicine",
           ("药", "药物", "常用药", "medicines", "drugs", "meds")),
    Supply("antigen-tests", "medicine", "pcs", "抗原试剂", "antigen tests",
           ("抗原", "抗原检测", "antigen", "antigen test", "test kits")),
)
_CATALOGUE_WORDS = {
    _fold(word): supply
    for supply in CATALOGUE
    for word in (supply.key, supply.zh, supply.en, *supply.aliases)
}
_CATALOGUE_KEYS = {supply.key: supply for supply in CATALOGUE}


def known_supply(word: str) -> Supply | None:
    """The catalogue's item for a name or alias (`口罩`, `Masks`, `Ｎ９５`), or None."""
    return _CATALOGUE_WORDS.get(_fold(word))


def item_label(name: str, lang: str) -> str:
    """How an item is shown: the catalogue's name in the language, or the name as typed."""
    supply = _CATALOGUE_KEYS.get(name)
    return supply.label(lang) if supply else name


def unit_label(key: str, lang: str) -> str:
    unit = UNITS.get(key)
    return unit.label(lang) if unit else key


# --- naming an item ---------------------------------------------------------------------


@dataclass
class Named:
    """An item as named in a command: this grid's row if it has one yet, else what it would be."""

    name: str
    supply: Supply | None
    item: models.SupplyItem | None


class SupplyName(Converter):
    """An item by name or alias: this grid's own aliases first, then the catalogue; a name
    neither knows is a new item of the category "other"."""

    by_name = True
    placeholder = "item"

    async def convert(self, ctx: Context, word: str) -> Named:
        folded = _fold(word)
        if (
            not folded or len(word) > MAX_NAME or word[0] in "@/"
            or (_is_amount(word) and not known_supply(word))
        ):
            raise ArgError("supply_name", word=word)
        glued = re.fullmatch(r"(\D+?)(\d.*)", unicodedata.normalize("NFKC", word))
        if glued and known_supply(glued[1]) and _is_amount(glued[2]):
            raise ArgError("supply_glued", word=word)
        items = await _grid_items(ctx) if ctx.grid is not None else []
        for item in items:
            if folded in {_fold(item.name), *(_fold(a) for a in item.aliases)}:
                return Named(item.name, _CATALOGUE_KEYS.get(item.name), item)
        supply = known_supply(word)
        name = supply.key if supply else word.strip()
        found = next((i for i in items if _fold(i.name) == _fold(name)), None)
        return Named(name, supply, found)


def _is_amount(word: str) -> bool:
    """Whether a word reads as a quantity (`500`, `500个`, `-5`) rather than a name
    (`N95`, `3M口罩`, `75%酒精`)."""
    try:
        parse_amount(word)
    except ArgError as error:
        return error.template in ("negative", "range")
    return True


async def _grid_items(ctx: Context) -> list[models.SupplyItem]:
    """This chat's grid's items (a grid has tens of them, not thousands)."""
    query = select(models.SupplyItem).where(models.SupplyItem.grid_id == ctx.require_grid().id)
    return list((await ctx.db.scalars(query.order_by(models.SupplyItem.id))).all())


class Aliases(Converter):
    """`alias=测温枪,thermometer`: one or more names, separated by commas."""

    placeholder = "alias,…"

    async def convert(self, ctx: Context, word: str) -> list[str]:
        names = [n.strip() for n in re.split(r"[,，、]", word) if n.strip()]
        for name in names:
            if len(name) > MAX_NAME or _is_amount(name):
                raise ArgError("supply_name", word=name)
        if not names:
            raise ArgError("missing", name="alias")
        return names


ItemName = Annotated[Named, SupplyName()]
Qty = Annotated[Amount, Quantity()]
UnitArg = Annotated[Unit, UnitWord()]
NeedRef = Annotated[models.SupplyNeed, Item("N", models.SupplyNeed)]


class CategoryChoice(Choice):
    placeholder = "category"  # `category=<category>` in the usage line


Category = Annotated[str, CategoryChoice(*CATEGORIES, aliases={
    "防护": "protective", "防护用品": "protective", "防疫": "protective",
    "消杀": "disinfection", "消毒": "disinfection", "消杀用品": "disinfection",
    "食品": "food", "食物": "food", "生活物资": "food", "生活": "food",
    "药品": "medicine", "医药": "medicine", "药": "medicine", "其他": "other",
})]
Scope = Annotated[str, Choice("all", aliases={"全部": "all", "全社区": "all"})]


# --- what is shown ----------------------------------------------------------------------


def days_of_cover(history: Sequence[tuple[datetime, float]]) -> float | None:
    """Days the latest level lasts at the current run's rate of use, to one decimal; None
    when unknown. `history` is (time, level), oldest first."""
    if len(history) < 2:
        return None
    start = len(history) - 1
    while start > 0 and history[start - 1][1] >= history[start][1]:
        start -= 1
    (first_at, first), (last_at, last) = history[start], history[-1]
    span = last_at - first_at
    used = first - last
    if span < MIN_RUN or used <= 0:
        return None
    per_day = used / (span / timedelta(days=1))
    return round(last / per_day, 1)


@dataclass
class Stock:
    """One grid's item as shown: level, minimum, last report, days of cover."""

    item: models.SupplyItem
    name: str
    unit: str
    level: float | None = None
    last_at: datetime | None = None
    last_by: str | None = None
    cover: float | None = None
    grid: models.Grid | None = None

    @property
    def category(self) -> str:
        return self.item.category

    @property
    def minimum(self) -> float | None:
        return self.item.minimum

    @property
    def low(self) -> bool:
        return is_low(self.level, self.item.minimum)

    @property
    def order(self) -> tuple:
        """Low items first, then the front line's categories, then the others."""
        return (not self.low, _category_rank(self.item.category), self.name.lower())


def is_low(level: float | None, minimum: float | None) -> bool:
    return level is not None and minimum is not None and level < minimum


def _category_rank(category: str) -> int:
    return CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES)


@dataclass
class NeedLine:
    need: models.SupplyNeed
    name: str
    unit: str
    by: str
    age: timedelta
    grid: models.Grid | None = None


@dataclass
class Row:
    """One item across the community's grids, for `/supplies all`."""

    name: str
    category: str
    cells: list[tuple[models.Grid, Stock | None]] = field(default_factory=list)

    @property
    def low(self) -> bool:
        return any(stock is not None and stock.low for _, stock in self.cells)


async def stocks(actions: Actions, items: list[models.SupplyItem]) -> list[Stock]:
    """The items as shown, low ones first; each with its latest reports read in one query."""
    histories = await _histories(actions.db, [item.id for item in items])
    people = await _labels(actions.db, {h[-1][2] for h in histories.values() if h})
    out = []
    for item in items:
        history = histories.get(item.id, [])
        stock = Stock(
            item, item_label(item.name, actions.lang), unit_label(item.unit, actions.lang)
        )
        if history:
            stock.last_at, stock.level, by = history[-1]
            stock.last_by = people.get(by)
            stock.cover = days_of_cover([(at, level) for at, level, _ in history])
        out.append(stock)
    return sorted(out, key=lambda s: s.order)


async def _histories(db, item_ids: list[int]) -> dict[int, list[tuple[datetime, float, int]]]:
    """The latest HISTORY reports of each item, oldest first."""
    if not item_ids:
        return {}
    ranked = (
        select(
            models.SupplyReport.item_id, models.SupplyReport.at, models.SupplyReport.level,
            models.SupplyReport.by_id,
            func.row_number().over(
                partition_by=models.SupplyReport.item_id,
                order_by=(models.SupplyReport.at.desc(), models.SupplyReport.id.desc()),
            ).label("rank"),
        )
        .where(models.SupplyReport.item_id.in_(item_ids))
        .subquery()
    )
    rows = await db.execute(
        select(ranked.c.item_id, ranked.c.at, ranked.c.level, ranked.c.by_id)
        .where(ranked.c.rank <= HISTORY)
        .order_by(ranked.c.item_id, ranked.c.rank.desc())
    )
    out: dict[int, list[tuple[datetime, float, int]]] = {}
    for item_id, at, level, by in rows.all():
        out.setdefault(item_id, []).append((at, level, by))
    return out


async def _labels(db, person_ids: set[int]) -> dict[int, str]:
    if not person_ids:
        return {}
    people = await db.scalars(select(models.Person).where(models.Person.id.in_(person_ids)))
    return {p.id: p.label for p in people}


async def _shown_items(actions: Actions, grid_id: int) -> list[models.SupplyItem]:
    """A grid's items worth listing: reported at least once, or given a minimum."""
    reported = select(models.SupplyReport.item_id).where(
        models.SupplyReport.item_id == models.SupplyItem.id
    ).exists()
    query = select(models.SupplyItem).where(
        models.SupplyItem.grid_id == grid_id,
        reported | models.SupplyItem.minimum.is_not(None),
    )
    return list((await actions.db.scalars(query.order_by(models.SupplyItem.id))).all())


async def open_needs(actions: Actions, *where) -> list[NeedLine]:
    rows = await actions.db.execute(
        select(models.SupplyNeed, models.Person, models.Grid)
        .join(models.Person, models.Person.id == models.SupplyNeed.by_id)
        .join(models.Grid, models.Grid.id == models.SupplyNeed.grid_id)
        .where(models.SupplyNeed.closed_at.is_(None), *where)
        .order_by(models.SupplyNeed.number)
    )
    return [_need_line(actions, need, person, grid) for need, person, grid in rows.all()]


def _need_line(actions: Actions, need: models.SupplyNeed, person: models.Person,
               grid: models.Grid | None = None) -> NeedLine:
    return NeedLine(need, item_label(need.item, actions.lang), unit_label(need.unit, actions.lang),
                    person.label, actions.now - need.at, grid)


# --- commands ---------------------------------------------------------------------------


@command("supply", role=Role.MEMBER, where=Where.GRID, aliases=("物资", "报物资"))
async def supply(ctx: Context, item: ItemName, qty: Qty, unit: UnitArg | None = None) -> None:
    """Report this grid's current level of an item (e.g. 口罩 500 个)."""
    amount = _amount(qty, unit)
    row, created = await _ensure_item(ctx, item, amount.unit)
    level = _in_unit_of(ctx, row, amount)
    ctx.db.add(models.SupplyReport(item_id=row.id, level=level, by_id=ctx.person.id, at=ctx.now))
    await ctx.db.flush()
    change, told = await _follow_minimum(ctx, row, level)
    [stock] = await stocks(ctx, [row])
    ctx.reply(
        "supplies/reported", stock=stock, change=change, told=told, created=created,
        typed=_typed(ctx, amount, row), grid=ctx.require_grid(),
    )


@command("supply min", role=Role.LEADER, where=Where.GRID)
async def supply_min(ctx: Context, item: ItemName, qty: Qty, unit: UnitArg | None = None) -> None:
    """Set an item's minimum level (0 clears it); below it the grid's leaders are alerted once."""
    amount = _amount(qty, unit)
    row, created = await _ensure_item(ctx, item, amount.unit)
    minimum = _in_unit_of(ctx, row, amount)
    row.minimum = minimum or None
    [stock] = await stocks(ctx, [row])
    change, told = await _follow_minimum(ctx, row, stock.level)
    ctx.reply("supplies/minimum_set", stock=stock, change=change, told=told, created=created,
              typed=_typed(ctx, amount, row))


@command("supply item", role=Role.LEADER, where=Where.GRID)
async def supply_item(
    ctx: Context,
    item: ItemName,
    *,
    category: Category | None = None,
    alias: Annotated[list[str], Aliases()] | None = None,
    unit: UnitArg | None = None,
) -> None:
    """Show an item, or give it a category, aliases (alias=a,b) or another unit."""
    if category is None and alias is None and unit is None:
        if item.item is None and item.supply is None:
            raise Reject("supplies/unknown_item", name=item.name)
        ctx.reply("supplies/item", **_item_view(ctx, item))
        return
    row, _ = await _ensure_item(ctx, item, unit)
    if category is not None:
        row.category = category
    if alias is not None:
        await _add_aliases(ctx, row, alias)
    if unit is not None and unit.key != row.unit:
        await _change_unit(ctx, row, unit)
    ctx.reply("supplies/item", **_item_view(ctx, Named(row.name, item.supply, row), changed=True))


@command("supplies", role=Role.MEMBER, where=Where.COMMUNITY, aliases=("库存", "物资清单"))
async def supplies(ctx: Context, scope: Scope | None = None) -> None:
    """This grid's supplies: level, minimum, last report, days of cover; low ones first
    (all: every grid side by side, for the secretary in the HQ chat)."""
    community = ctx.require_community()
    in_hq = ctx.chat.id == community.hq_chat_id
    if scope == "all" or (ctx.grid is None and in_hq):
        if ctx.role < Role.SECRETARY:
            raise Refused(Role.SECRETARY)
        if not in_hq:
            raise Refused(where=Where.HQ)
        await _community_view(ctx, community)
        return
    grid = ctx.require_grid()
    shown = await stocks(ctx, await _shown_items(ctx, grid.id))
    needs = await open_needs(ctx, models.SupplyNeed.grid_id == grid.id)
    ctx.reply("supplies/list", grid=grid, stocks=shown, needs=needs)


@command("need", role=Role.MEMBER, where=Where.GRID, aliases=("需求", "求援"))
async def need(
    ctx: Context, item: ItemName, qty: Qty, unit: UnitArg | None = None, note: Text = ""
) -> None:
    """A priority request for the front line → N<n>, in the digest until it is met."""
    grid = ctx.require_grid()
    amount = _amount(qty, unit)
    row, _ = await _ensure_item(ctx, item, amount.unit)
    quantity = _in_unit_of(ctx, row, amount)
    if quantity <= 0:
        raise ArgError("range", word=f"{qty.value:g}", low=1, high=MAX_QUANTITY)
    request = models.SupplyNeed(
        community_id=grid.community_id, number=await next_number(ctx.db, grid.community_id, "N"),
        grid_id=grid.id, item_id=row.id, item=row.name, quantity=quantity, unit=row.unit,
        note=note, by_id=ctx.person.id, at=ctx.now, met_note="",
    )
    ctx.db.add(request)
    await ctx.db.flush()
    ctx.ref(f"N{request.number}")
    line = _need_line(ctx, request, ctx.person, grid)
    ctx.post(ctx.chat, "supplies/need_posted", line=line, hq=False,
             reply_to=ctx.message.message_id, **_meetable(ctx, request))
    community = ctx.require_community()
    hq = await ctx.db.get(models.Chat, community.hq_chat_id) if community.hq_chat_id else None
    if hq is not None and hq.id != ctx.chat.id:
        ctx.post(hq, "supplies/need_posted", line=line, hq=True, **_meetable(ctx, request))


@command("need done", role=Role.LEADER, where=Where.COMMUNITY)
async def need_done(ctx: Context, need: NeedRef, note: Text = "") -> None:
    """Mark a priority request met (a leader of its grid, or the secretary); the person who
    asked is told."""
    grid = await load(ctx.db, models.Grid, need.grid_id)
    if ctx.role_in(grid) < Role.LEADER:
        raise Reject("supplies/need_other_grid", number=need.number, grid=grid, cancel=False)
    # One conditional UPDATE: of two people marking it at once (the button), one does.
    met = await ctx.db.scalar(
        update(models.SupplyNeed)
        .where(models.SupplyNeed.id == need.id, models.SupplyNeed.closed_at.is_(None))
        .values(closed_at=ctx.now, met_by_id=ctx.person.id, met_note=note, state="met")
        .returning(models.SupplyNeed.id)
        .execution_options(synchronize_session=False)
    )
    await ctx.db.refresh(need)
    if met is None:
        await _already_closed(ctx, need)
    assert need.closed_at is not None  # just set by the update
    ctx.record(
        "supply_needs", need.id,
        before={"closed_at": None, "met_by_id": None, "met_note": "", "state": "pending"},
        after={"closed_at": need.closed_at.isoformat(), "met_by_id": ctx.person.id,
               "met_note": note, "state": "met"},
    )
    ctx.ref(f"N{need.number}")
    await _say_closed(ctx, need, grid, "met")


@command("need cancel", role=Role.MEMBER, where=Where.COMMUNITY, sub_aliases=("取消", "撤销"))
async def need_cancel(ctx: Context, need: NeedRef) -> None:
    """Cancel a priority request no longer needed (the person who asked, a leader of its grid,
    or the secretary); it leaves the digest and /supplies."""
    grid = await load(ctx.db, models.Grid, need.grid_id)
    if need.by_id != ctx.person.id and ctx.role_in(grid) < Role.LEADER:
        if ctx.standing.top_role(grid.community_id) >= Role.LEADER:  # of another grid
            raise Reject("supplies/need_other_grid", number=need.number, grid=grid,
                         cancel=True)
        raise Refused(Role.LEADER)
    # One conditional UPDATE, as for "met": of a cancel and a "met" at once, one counts.
    cancelled = await ctx.db.scalar(
        update(models.SupplyNeed)
        .where(models.SupplyNeed.id == need.id, models.SupplyNeed.closed_at.is_(None))
        .values(closed_at=ctx.now, state="cancelled")
        .returning(models.SupplyNeed.id)
        .execution_options(synchronize_session=False)
    )
    await ctx.db.refresh(need)
    if cancelled is None:
        await _already_closed(ctx, need)
    ctx.record(
        "supply_needs", need.id,
        before={"closed_at": None, "state": "pending"},
        after={"closed_at": ctx.now.isoformat(), "state": "cancelled"},
    )
    ctx.ref(f"N{need.number}")
    await _say_closed(ctx, need, grid, "cancelled")


async def _say_closed(
    ctx: Context, need: models.SupplyNeed, grid: models.Grid, how: str
) -> None:
    """Tells the grid's chats that a request was met or cancelled, and the person who asked
    if someone else closed it."""
    asker = await load(ctx.db, models.Person, need.by_id)
    line = _need_line(ctx, need, asker, grid)
    ctx.reply(f"supplies/need_{how}", line=line, by=ctx.person.label)
    chats = await grid_chats(ctx.db, grid.id)
    for chat in chats:
        if chat.id != ctx.chat.id:
            ctx.post(chat, f"supplies/need_{how}", line=line, by=ctx.person.label)
    if asker.id != ctx.person.id:
        origin = next((c for c in chats if c.transport == asker.transport), ctx.chat)
        ctx.tell(asker, f"supplies/told_{how}", origin=origin, line=line, by=ctx.person.label)


async def _already_closed(ctx: Context, need: models.SupplyNeed) -> None:
    """Refuses to close a request twice, saying how and when it was closed."""
    by = await ctx.db.get(models.Person, need.met_by_id) if need.met_by_id else None
    raise Reject("supplies/need_closed", number=need.number, state=need.state,
                 by=by.label if by else None, at=need.closed_at)


# --- the digest -------------------------------------------------------------------------


@digest_section("supplies", order=50, template="supplies/digest")
async def digest(actions: Actions, grid: models.Grid, since: datetime, until: datetime) -> dict:
    """One grid's items below their minimum (with days of cover where known) and its open
    priority requests, oldest first."""
    low_items = (
        await actions.db.scalars(
            select(models.SupplyItem)
            .where(models.SupplyItem.grid_id == grid.id, models.SupplyItem.low_since.is_not(None))
            .order_by(models.SupplyItem.id)
        )
    ).all()
    low = [s for s in await stocks(actions, list(low_items)) if s.low]
    needs = await open_needs(actions, models.SupplyNeed.grid_id == grid.id)
    # A request for the front line weighs as much as an item running out.
    return {"low": low, "needs": needs, "urgency": len(low) + len(needs)}


# --- helpers ----------------------------------------------------------------------------


def _amount(qty: Amount, unit: Unit | None) -> Amount:
    """The quantity with its unit, glued on or given as the next word (not both, differing)."""
    if unit is None:
        return qty
    if qty.unit is not None and qty.unit.key != unit.key:
        raise ArgError("unexpected", word=unit.key)
    return Amount(qty.value, unit)


async def _ensure_item(
    ctx: Context, named: Named, unit: Unit | None
) -> tuple[models.SupplyItem, bool]:
    """This grid's row for the item, created on first mention: from the catalogue, or as
    "other" counted in the unit first given (pieces if none). True if it was created."""
    if named.item is not None:
        return named.item, False
    grid = ctx.require_grid()
    supply = named.supply
    row = models.SupplyItem(
        community_id=grid.community_id, grid_id=grid.id, name=named.name,
        category=supply.category if supply else "other",
        unit=supply.unit if supply else (unit.key if unit else "pcs"),
        minimum=None, aliases=[], low_since=None,
    )
    try:
        async with ctx.db.begin_nested():
            ctx.db.add(row)
            await ctx.db.flush()
    except IntegrityError:  # created meanwhile by someone else in this grid
        row = (await ctx.db.scalars(
            select(models.SupplyItem).where(
                models.SupplyItem.grid_id == grid.id, models.SupplyItem.name == named.name
            )
        )).one()
        return row, False
    return row, True


def _in_unit_of(ctx: Context, row: models.SupplyItem, amount: Amount) -> float:
    """The amount in the item's unit; a unit that does not convert is refused."""
    own = UNITS.get(row.unit)
    if amount.unit is None or own is None or amount.unit.key == row.unit:
        return amount.value
    value = convert_level(amount.value, amount.unit, own)
    if value is None:
        raise Reject(
            "supplies/wrong_unit", item=item_label(row.name, ctx.lang),
            unit=amount.unit.label(ctx.lang), own=own.label(ctx.lang),
        )
    return value


def _typed(ctx: Context, amount: Amount, row: models.SupplyItem) -> str | None:
    """`1.5 吨` when the amount was typed in another unit than the item's (shown with the
    converted figure), else None."""
    if amount.unit is None or amount.unit.dimension == "count" or amount.unit.key == row.unit:
        return None
    value = int(amount.value) if amount.value.is_integer() else amount.value
    return f"{value} {amount.unit.label(ctx.lang)}"


async def _follow_minimum(
    ctx: Context, row: models.SupplyItem, level: float | None
) -> tuple[str | None, int]:
    """Keeps the low-alert state in step with `level`. Returns what changed — "alerted" when
    this change made the item low (the one alert goes out), "low" when it stays low,
    "recovered" when it is back at or above the minimum (the alert re-armed), or None — and
    how many leaders were alerted."""
    if is_low(level, row.minimum):
        if row.low_since is not None:
            return "low", 0
        # One conditional UPDATE: of two reports crossing at once, one alerts.
        low_since = await ctx.db.scalar(
            update(models.SupplyItem)
            .where(models.SupplyItem.id == row.id, models.SupplyItem.low_since.is_(None))
            .values(low_since=ctx.now)
            .returning(models.SupplyItem.low_since)
            .execution_options(synchronize_session=False)
        )
        await ctx.db.refresh(row)
        if low_since is None:
            return "low", 0
        ctx.record("supply_items", row.id, before={"low_since": None},
                   after={"low_since": low_since.isoformat()})
        return "alerted", await _alert_leaders(ctx, row)
    if row.low_since is not None:
        row.low_since = None
        return "recovered", 0
    return None, 0


async def _alert_leaders(ctx: Context, row: models.SupplyItem) -> int:
    """The one low alert, by direct message to the grid's leaders (the secretaries if the
    grid has none), except the person whose report caused it. Returns how many were told."""
    grid = ctx.require_grid()
    leaders = await _leaders(ctx, grid, "leader") or await _leaders(ctx, grid, "secretary")
    [stock] = await stocks(ctx, [row])
    told = [p for p in leaders if p.id != ctx.person.id]
    for person in told:
        ctx.tell(person, "supplies/low_alert", origin=ctx.chat, stock=stock, grid=grid,
                 by=ctx.person.label)
    return len(told)


async def _leaders(ctx: Context, grid: models.Grid, role: str) -> list[models.Person]:
    where = models.Membership.role == role
    if role == "leader":
        where = where & (models.Membership.grid_id == grid.id)
    query = (
        select(models.Person)
        .join(models.Membership, models.Membership.person_id == models.Person.id)
        .where(models.Membership.community_id == grid.community_id, where)
        .distinct()
        .order_by(models.Person.id)
    )
    return list((await ctx.db.scalars(query)).all())


async def _add_aliases(ctx: Context, row: models.SupplyItem, names: list[str]) -> None:
    """New aliases, unless one already names another item of the grid or of the catalogue."""
    others = [i for i in await _grid_items(ctx) if i.id != row.id]
    for name in names:
        folded = _fold(name)
        other = next(
            (i.name for i in others if folded in {_fold(i.name), *(_fold(a) for a in i.aliases)}),
            None,
        )
        supply = known_supply(name)
        if other is None and supply is not None and supply.key != row.name:
            other = supply.key
        if other is not None:
            raise Reject("supplies/alias_taken", alias=name, other=item_label(other, ctx.lang))
    known = {_fold(a) for a in row.aliases}
    row.aliases = [*row.aliases, *(n for n in names if _fold(n) not in known)]


async def _change_unit(ctx: Context, row: models.SupplyItem, unit: Unit) -> None:
    """Another unit for an item: its history, minimum and open requests are converted; an
    item with reports cannot move to a unit its levels do not convert to."""
    old = UNITS.get(row.unit)
    reports = (
        await ctx.db.scalars(
            select(models.SupplyReport).where(models.SupplyReport.item_id == row.id)
        )
    ).all()
    if old is None or old.dimension != unit.dimension:
        if reports:
            raise Reject("supplies/unit_in_use", item=item_label(row.name, ctx.lang),
                         own=unit_label(row.unit, ctx.lang), unit=unit.label(ctx.lang))
        row.unit = unit.key
        return
    for report in reports:
        report.level = _rescale(report.level, old, unit)
    if row.minimum is not None:
        row.minimum = _rescale(row.minimum, old, unit)
    needs = await ctx.db.scalars(select(models.SupplyNeed).where(
        models.SupplyNeed.item_id == row.id, models.SupplyNeed.closed_at.is_(None)))
    for request in needs:
        request.quantity = _rescale(request.quantity, old, unit)
        request.unit = unit.key
    row.unit = unit.key


def _rescale(value: float, unit: Unit, to: Unit) -> float:
    """`value` in `unit` expressed in `to`, a unit of the same dimension."""
    converted = convert_level(value, unit, to)
    if converted is None:
        raise ValueError(f"{unit.key} does not convert to {to.key}")
    return converted


def _item_view(ctx: Context, named: Named, *, changed: bool = False) -> dict:
    row, supply = named.item, named.supply
    known = row or supply
    if known is None:
        raise ValueError(f"{named.name!r} is neither an item of the grid nor of the catalogue")
    return {
        "name": item_label(named.name, ctx.lang),
        "category": known.category,
        "unit": unit_label(known.unit, ctx.lang),
        "aliases": ([supply.zh, supply.en, *supply.aliases] if supply else [])
        + (row.aliases if row else []),
        "minimum": row.minimum if row else None,
        "changed": changed,
    }


def _meetable(actions: Actions, request: models.SupplyNeed) -> dict:
    """The one-tap "met": a button (Telegram), a reaction (Matrix), a text hint elsewhere."""
    label = actions.render("supplies/met_button")
    text = f"/need done N{request.number}"
    return {"buttons": [{"label": label, "command": text, "emoji": "✅"}],
            "ref": f"N{request.number}"}


async def _community_view(ctx: Context, community: models.Community) -> None:
    """Every grid side by side: one line per item, each grid's level on it."""
    grids = list(
        await ctx.db.scalars(
            select(models.Grid)
            .where(models.Grid.community_id == community.id)
            .order_by(models.Grid.code)
        )
    )
    rows: dict[str, Row] = {}
    for index, grid in enumerate(grids):
        for stock in await stocks(ctx, await _shown_items(ctx, grid.id)):
            stock.grid = grid
            row = rows.setdefault(
                stock.item.name, Row(stock.name, stock.category, [(g, None) for g in grids])
            )
            row.cells[index] = (grid, stock)
    ordered = sorted(
        rows.values(), key=lambda r: (not r.low, _category_rank(r.category), r.name.lower())
    )
    needs = await open_needs(ctx, models.SupplyNeed.community_id == community.id)
    ctx.reply("supplies/all", community=community, grids=grids, rows=ordered, needs=needs)
