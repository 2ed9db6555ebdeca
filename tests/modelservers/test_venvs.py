"""The cached model-server venvs: located by hash, built once, rebuilt when half-finished."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from muse.testing import CACHE_ENV, ModelServerError, cache_root, ensure_venv, venv_info, venv_path
from muse.testing import venvs as venvs_module


def test_cache_root_follows_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "elsewhere"))
    assert cache_root() == tmp_path / "elsewhere"
    assert venv_path("mlserver").parent == tmp_path / "elsewhere"


def test_each_kind_has_its_own_venv(tmp_path: Path) -> None:
    triton, mlserver = (venv_path(k, cache_dir=tmp_path) for k in ("triton", "mlserver"))
    assert triton.name.startswith("triton-")
    assert mlserver.name.startswith("mlserver-")
    assert triton != mlserver
    assert venv_path("triton", cache_dir=tmp_path) == triton  # stable


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelServerError, match="unknown model server kind 'tfserving'"):
        ensure_venv("tfserving", cache_dir=tmp_path)  # type: ignore[arg-type]


def test_concurrent_installs_over_a_half_finished_venv_install_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two installers racing over an interrupted install: one rebuilds it, the other waits.

    The install itself is a fake (a bare ``python -m venv``): the session's servers prove
    the real one. It holds the lock until the second installer has started, so a missing
    lock would show as a second install.
    """
    venv = venv_path("mlserver", cache_dir=tmp_path)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "left-over").write_text("an interrupted install")
    installs: list[Path] = []
    second_started = threading.Event()

    def fake_install(target: Path, *_: object) -> None:
        installs.append(target)
        assert not target.exists(), "the half-finished venv must be removed first"
        assert second_started.wait(timeout=30)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)

    monkeypatch.setattr(venvs_module, "_install", fake_install)
    results: list[Path] = []
    errors: list[BaseException] = []

    def install(started: threading.Event | None) -> None:
        if started is not None:
            started.set()
        try:
            results.append(ensure_venv("mlserver", cache_dir=tmp_path))
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=install, args=(None,))
    first.start()
    assert _wait(lambda: bool(installs), timeout=30), "the first installer never started"
    second = threading.Thread(target=install, args=(second_started,))
    second.start()
    for t in (first, second):
        t.join(timeout=60)
    assert not errors
    assert results == [venv, venv]
    assert installs == [venv]
    assert not (venv / "bin" / "left-over").exists()
    assert venv_info(venv).python == venv / "bin" / "python"
    assert ensure_venv("mlserver", cache_dir=tmp_path) == venv  # ready: no install
    assert installs == [venv]


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_failed_install_raises_with_the_installer_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("this-package-does-not-parse==\n")
    monkeypatch.setattr(venvs_module, "requirements_file", lambda kind: broken)
    with pytest.raises(
        ModelServerError, match=r"(?s)installing a model-server venv failed.*broken\.txt"
    ):
        ensure_venv("mlserver", cache_dir=tmp_path)
    assert not (venv_path("mlserver", cache_dir=tmp_path) / ".muse-venv.json").exists()
