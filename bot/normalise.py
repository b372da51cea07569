"""What people type on phones, folded once before a command is read.

Chinese input methods type full-width letters, digits and signs (`／ｃｌａｉｍ Ｅ１`,
`people＝３`, `２０：００`, `３－１－１０１`) and full-width spaces; phones add invisible
direction and zero-width marks. `normalise` folds those to their plain forms, so that every
converter in bot/args.py sees one spelling.

It is NFKC applied only where that is safe: to the full-width forms block, minus the
Chinese punctuation that belongs to prose (`，！？；：（）` …), which stays as typed in notes
and announcements. `：`, `。`, `，` and `．` between two digits are read as the time or
decimal separator they stand for there (`20：00`, `38。5`). Chinese characters and names
are never touched; compatibility ideographs are left alone.
"""

from __future__ import annotations

import re
import unicodedata

# Full-width signs that are Chinese prose punctuation: kept as typed.
_PROSE = set("，！？；：（）＂＇～＜＞［］｛｝｀＾｜＼＄＆＊＋％＃")
# Spaces of every width read as one plain space.
_SPACES = "\u3000\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f"
# Invisible marks phones insert: zero-width space, word joiner, byte-order mark, LRM/RLM.
_INVISIBLE = "\u200b\u2060\ufeff\u200e\u200f"


def _fold_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0xFF01, 0xFF5F):  # the full-width ASCII variants
        char = chr(code)
        if char not in _PROSE:
            table[code] = unicodedata.normalize("NFKC", char)
    for space in _SPACES:
        table[ord(space)] = " "
    for mark in _INVISIBLE:
        table[ord(mark)] = ""
    return table


_TABLE = _fold_table()
_BETWEEN_DIGITS = re.compile(r"(?<=\d)[：。，．](?=\d)")
_SEPARATORS = {"：": ":", "。": ".", "，": ",", "．": "."}


def normalise(text: str) -> str:
    """The text as the parser should read it (see the module's docstring)."""
    text = unicodedata.normalize("NFC", text).translate(_TABLE)
    return _BETWEEN_DIGITS.sub(lambda m: _SEPARATORS[m.group()], text)
