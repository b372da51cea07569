"""Captures every row a command writes, for the audit log, /history and /undo.

Turned on per session by putting a list in `session.info["audit"]`; bookkeeping tables
(outbox, dedupe, the audit log itself) are left out.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

SKIPPED = {"audit_log", "outbox", "processed_messages", "posted_messages", "key_values", "people"}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    return value


def _row(obj: Any) -> dict[str, Any]:
    mapper = inspect(obj).mapper
    return {c.key: _plain(getattr(obj, c.key)) for c in mapper.column_attrs}


@event.listens_for(Session, "after_flush")
def _capture(session: Session, _context) -> None:
    changes = session.info.get("audit")
    if changes is None:
        return
    for obj in session.new:
        if obj.__tablename__ not in SKIPPED:
            changes.append({"table": obj.__tablename__, "id": _pk(obj), "op": "insert",
                            "before": None, "after": _row(obj)})
    for obj in session.dirty:
        if obj.__tablename__ in SKIPPED or not session.is_modified(obj):
            continue
        state = inspect(obj)
        before, after = {}, {}
        for attr in state.mapper.column_attrs:
            history = state.attrs[attr.key].history
            if history.has_changes():
                before[attr.key] = _plain(history.deleted[0]) if history.deleted else None
                after[attr.key] = _plain(history.added[0]) if history.added else None
        if after:
            changes.append({"table": obj.__tablename__, "id": _pk(obj), "op": "update",
                            "before": before, "after": after})
    for obj in session.deleted:
        if obj.__tablename__ not in SKIPPED:
            changes.append({"table": obj.__tablename__, "id": _pk(obj), "op": "delete",
                            "before": _row(obj), "after": None})


def _pk(obj: Any) -> Any:
    key = inspect(obj).mapper.primary_key_from_instance(obj)
    return _plain(key[0]) if len(key) == 1 else [_plain(k) for k in key]
