"""Lakes to write to: a local folder and an fsspec memory filesystem, each unique per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped, unused-ignore]
import pytest

from muse.scorelog import LakeRow
from tests.scorelog.rows import read_lake


@dataclass(frozen=True)
class Lake:
    """Where a writer writes (``url``) and how a reader reads it back (``root`` on ``fs``)."""

    url: str
    root: str
    fs: Any

    def rows(self) -> list[LakeRow]:
        return read_lake(self.root, self.fs)

    def files(self) -> list[str]:
        return sorted(p for p in self.fs.find(self.root) if p.endswith(".parquet"))


def memory_lake() -> Lake:
    """A fresh root in fsspec's process-wide memory store."""
    name = f"lake-{uuid.uuid4().hex}"
    return Lake(f"memory://{name}", f"/{name}", fsspec.filesystem("memory"))


@pytest.fixture(params=["local", "memory"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    if request.param == "local":
        root = str(tmp_path / "lake")
        yield Lake(root, root, fsspec.filesystem("file"))
    else:
        mem = memory_lake()
        yield mem
        if mem.fs.exists(mem.root):
            mem.fs.rm(mem.root, recursive=True)
