"""Fake fsspec filesystems for the writer's failure modes: real storage, scripted trouble.

Each is a real in-memory (or local) filesystem with one behaviour changed, so the writer
runs its true code path and the lake can be read back with pyarrow afterwards. Instances
are not cached by fsspec (``cachable = False``): every test gets its own hooks.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped, unused-ignore]
from fsspec.implementations.memory import MemoryFileSystem  # type: ignore[import-untyped, unused-ignore]


class BlockingFS(MemoryFileSystem):  # type: ignore[misc]
    """``open`` waits until :attr:`gate` is set: a sink that hangs."""

    cachable = False

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" in mode:
            self.waiting.set()
            self.gate.wait(10)
        return super().open(path, mode, **kwargs)


class FailingFS(MemoryFileSystem):  # type: ignore[misc]
    """``open`` (or ``mv``) raises ``OSError`` while :attr:`failing` (:attr:`failing_mv`) is set."""

    cachable = False

    def __init__(self) -> None:
        super().__init__()
        self.failing = True
        self.failing_mv = False
        self.write_opens = 0

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" in mode:
            self.write_opens += 1
        if "w" in mode and self.failing:
            raise OSError(f"sink down: cannot open {path}")
        return super().open(path, mode, **kwargs)

    def mv(self, path1: str, path2: str, **kwargs: Any) -> None:
        if self.failing_mv:
            raise OSError("rename refused")
        super().mv(path1, path2, **kwargs)


class _SlowFile:
    """A file whose writes sleep, recording each call in its filesystem's journal."""

    def __init__(self, inner: Any, path: str, journal: list[tuple[str, str]], delay: float):
        self._inner, self._path, self._journal, self._delay = inner, path, journal, delay

    def write(self, data: Any) -> int:
        self._journal.append(("write", self._path))
        time.sleep(self._delay)
        return int(self._inner.write(data))

    def close(self) -> None:
        self._inner.close()
        self._journal.append(("close", self._path))

    def __enter__(self) -> _SlowFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Journaled:
    """Mixin: writes are slow, and opens, writes, closes and moves are journaled in order."""

    delay = 0.002

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.journal: list[tuple[str, str]] = []
        #: Final names that already existed when the writer moved a file onto them.
        self.clobbered: list[str] = []

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = super().open(path, mode, **kwargs)  # type: ignore[misc]
        if "w" not in mode:
            return f
        self.journal.append(("open", path))
        return _SlowFile(f, path, self.journal, self.delay)

    def mv(self, path1: str, path2: str, **kwargs: Any) -> None:
        if self.exists(path2):  # type: ignore[attr-defined]
            self.clobbered.append(path2)
        self.journal.append(("mv", f"{path1} -> {path2}"))
        super().mv(path1, path2, **kwargs)  # type: ignore[misc]


class SlowMemoryFS(_Journaled, MemoryFileSystem):  # type: ignore[misc]
    cachable = False


class SlowLocalFS(_Journaled, LocalFileSystem):  # type: ignore[misc]
    cachable = False
