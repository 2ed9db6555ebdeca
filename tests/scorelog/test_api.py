"""The scorelog public surface is a contract: pin it."""

from __future__ import annotations

import muse.scorelog


def test_public_names_are_pinned() -> None:
    assert sorted(muse.scorelog.__all__) == [
        "LAKE_SCHEMA",
        "LakeColumns",
        "LakeError",
        "LakeReader",
        "LakeRow",
        "LakeWriter",
        "Window",
        "rows_to_table",
    ]
    for name in muse.scorelog.__all__:
        assert getattr(muse.scorelog, name) is not None
