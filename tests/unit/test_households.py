"""Household codes normalise however they are typed."""

from hypothesis import given
from hypothesis import strategies as st

from storage.households import normalise_household, pattern_codes

part = st.from_regex(r"[1-9][0-9]{0,3}", fullmatch=True)


@given(part, part, part)
def test_chinese_and_dashed_forms_agree(building, unit, room):
    dashed = normalise_household(f"{building}-{unit}-{room}")
    assert dashed == f"{building}-{unit}-{room}"
    assert normalise_household(f"{building}栋{unit}单元{room}室") == dashed
    assert normalise_household(f"{building}号楼{unit}单元{room}") == dashed
    assert normalise_household(f" {building}/{unit}/{room} ") == dashed


@given(st.text(max_size=30))
def test_anything_else_is_rejected_or_normalised_to_three_parts(text):
    code = normalise_household(text)
    assert code is None or len(code.split("-")) == 3


def test_not_household_codes():
    for text in ["", "3", "3-2", "a-b", "3栋", "三栋二单元101室", "3-2-101-5"]:
        assert normalise_household(text) is None, text


def test_building_pattern_counts_and_codes():
    codes = pattern_codes("3", units=2, floors=6, rooms=2)
    assert len(codes) == 24 == len(set(codes))
    assert codes[0] == "3-1-101" and codes[-1] == "3-2-602"
