"""The service freezes its start-up heap (no full-collection pauses over the loaded models)."""

from __future__ import annotations

import asyncio
import gc
import shutil
from pathlib import Path

from muse.serving.app import MuseApp

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def test_models_are_frozen_while_serving_and_released_at_shutdown(tmp_path: Path) -> None:
    for name in ("models", "transforms", "features"):
        shutil.copytree(QUICKSTART / name, tmp_path / name)
    shutil.copy2(QUICKSTART / "muse.yaml", tmp_path / "muse.yaml")  # its lake: tmp_path/lake
    app = MuseApp(tmp_path / "muse.yaml")
    assert gc.get_freeze_count() == 0

    async def main() -> tuple[int, int, int]:
        await app.startup()
        frozen = gc.get_freeze_count()
        await app.reload()  # the new snapshot is frozen in turn
        after_reload = gc.get_freeze_count()
        for _ in range(20):
            await app.reload()
        after_more = gc.get_freeze_count()
        await app.shutdown()
        return frozen, after_reload, after_more

    frozen, after_reload, after_more = asyncio.run(main())
    # The loaded config, models and runtimes: tens of thousands of objects.
    assert frozen > 10_000
    assert after_reload > 10_000
    # Reloads do not pile up frozen garbage: the reload's own cycles are collected before
    # freezing (without that collection: ~240 more objects per reload).
    assert after_more - after_reload < 20 * 50
    assert gc.get_freeze_count() == 0
