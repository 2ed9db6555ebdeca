"""The ``reports`` extra stays off a scoring replica: serving never imports DuckDB or
matplotlib, and a command that needs a missing extra says which one to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from muse.extras import EXTRAS, MissingExtraError, require
from muse.scorelog import LAKE_SCHEMA

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "muse.yaml"

#: What `muse serve` and the fleet follower import, end to end.
SERVING_MODULES = ("muse.cli", "muse.serving.server", "muse.serving.app", "muse.fleet")


def test_serving_imports_no_optional_dependency() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in SERVING_MODULES)
        + f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(EXTRAS)!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def test_require_imports_an_installed_module() -> None:
    assert require("json", "testing").dumps([1]) == "[1]"


def test_a_missing_extra_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)  # import duckdb -> ModuleNotFoundError
    with pytest.raises(MissingExtraError) as caught:
        require("duckdb", "reading the score lake")
    message = str(caught.value)
    assert "reading the score lake needs duckdb" in message
    assert "pip install 'muse-serve[reports]'" in message
    assert isinstance(caught.value, ImportError)


def test_a_broken_dependency_of_an_installed_module_is_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "halfbroken.py").write_text("import not_a_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as caught:
        require("halfbroken", "testing")
    assert not isinstance(caught.value, MissingExtraError)


def test_a_command_without_its_extra_exits_2_with_the_install_line(tmp_path: Path) -> None:
    """``muse report`` on a machine without DuckDB (the serving image): exit 2, no traceback."""
    part = tmp_path / "date=2026-01-01" / "predictor=ensemble-v1" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(LAKE_SCHEMA.empty_table(), part)
    code = (
        "import sys; sys.modules['duckdb'] = None\n"
        "from muse.cli import main\n"
        f"sys.argv = ['muse', 'report', 'alignment', {str(QUICKSTART)!r}, '-p', 'ensemble-v1', "
        f"'-t', 'bank1', '--lake', {str(tmp_path)!r}]\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'muse-serve[reports]'" in done.stderr
    assert "Traceback" not in done.stderr
