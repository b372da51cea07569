"""The schema's history stays one line: engineers adding migrations side by side must chain
them, or `upgrade head` fails at start."""

from alembic.script import ScriptDirectory

from storage.db import alembic_config


def test_one_alembic_head():
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, heads
