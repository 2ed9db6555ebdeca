"""Cached virtual environments for the real model servers (Triton, MLServer).

Neither server can live in the project's environment: Triton's Python backend needs
numpy < 2 and MLServer pins old FastAPI/Starlette/protobuf. Each gets a venv of its own,
built from the pinned requirements in ``requirements/<kind>.txt`` and cached under
:func:`cache_root` in a folder named after a hash of those requirements and the Python
version, so changing a pin builds a new venv and leaves the old one alone.

An install is safe to interrupt and to race: a file lock serialises installers (two
pytest workers, a test run and a benchmark), and the marker file that makes a venv
usable is written last, so a half-finished venv is rebuilt from scratch on the next call.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO, get_args

from muse.errors import MuseError

__all__ = [
    "CACHE_ENV",
    "ModelServerError",
    "ServerKind",
    "VenvInfo",
    "cache_root",
    "ensure_venv",
    "requirements_file",
    "venv_info",
    "venv_path",
]

#: A model server muse can run for tests and benchmarks.
ServerKind = Literal["triton", "mlserver"]

#: Environment variable naming the folder that holds the cached venvs.
CACHE_ENV = "MUSE_MODEL_SERVER_CACHE"

_REPO = Path(__file__).resolve().parents[3]
_REQUIREMENTS = Path(__file__).resolve().parent / "requirements"
_MARKER = ".muse-venv.json"
#: Longest an install may take, including the wait for another process's install.
_INSTALL_TIMEOUT_S = 1200.0
#: Version of the install recipe (this module's steps), part of each venv's hash: bump it
#: when the steps change so cached venvs built the old way are not reused.
_RECIPE = "1"
#: Where pytriton keeps the Triton distribution, relative to site-packages.
_TRITON_DIST = Path("pytriton") / "tritonserver"


class ModelServerError(MuseError, RuntimeError):
    """A model server's venv could not be built, or the server could not be started or stopped."""


@dataclass(frozen=True, slots=True)
class VenvInfo:
    """What the servers need to know about a ready venv (stored in its marker file)."""

    kind: ServerKind
    path: Path
    python: Path
    #: ``major.minor`` of the venv's interpreter.
    python_version: str
    #: The venv's site-packages (Triton's embedded interpreter does not see it by itself).
    site_packages: Path
    #: Folder of the interpreter's ``libpython`` (Triton's backend stub links against it).
    python_libdir: Path
    install_seconds: float


def cache_root() -> Path:
    """Folder holding the cached venvs: ``$MUSE_MODEL_SERVER_CACHE``, else ``<repo>/.cache/model-servers``.

    Outside a source checkout (muse installed as a wheel) the default is
    ``~/.cache/muse/model-servers``.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser().resolve()
    if (_REPO / "pyproject.toml").is_file():
        return _REPO / ".cache" / "model-servers"
    return Path.home() / ".cache" / "muse" / "model-servers"


def requirements_file(kind: ServerKind) -> Path:
    """The pinned requirements of ``kind``'s venv."""
    _check_kind(kind)
    return _REQUIREMENTS / f"{kind}.txt"


def ensure_venv(
    kind: ServerKind, *, cache_dir: Path | None = None, use_uv: bool | None = None
) -> Path:
    """The ready venv of ``kind`` (``"triton"`` or ``"mlserver"``), installing it if needed.

    The venv is ``<cache_dir>/<kind>-<hash>``, ``cache_dir`` defaulting to :func:`cache_root`.
    Idempotent and cheap once installed (one file read). Installs with the repository's
    private uv (``.tools/bin/uv``) when present, else ``python -m venv`` and pip;
    ``use_uv`` forces either. Raises :class:`ModelServerError` with the installer's output
    when the install fails.
    """
    venv = venv_path(kind, cache_dir=cache_dir)
    root = venv.parent
    if (venv / _MARKER).is_file():
        return venv
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{venv.name}.lock", _INSTALL_TIMEOUT_S):
        if (venv / _MARKER).is_file():  # another process finished it while we waited
            return venv
        if venv.exists():  # a previous install was interrupted: start again
            shutil.rmtree(venv)
        started = time.monotonic()
        log = root / f"{venv.name}.install.log"
        uv = _uv() if use_uv is not False else None
        if use_uv and uv is None:
            raise ModelServerError(
                f"use_uv=True but no uv at {_REPO / '.tools' / 'bin' / 'uv'}; run `make setup`"
            )
        _install(venv, requirements_file(kind), uv, log)
        info = _describe(kind, venv, time.monotonic() - started)
        if kind == "triton":
            _install_triton_stub(info)
        _write_marker(info)
    return venv


def venv_path(kind: ServerKind, *, cache_dir: Path | None = None) -> Path:
    """Where :func:`ensure_venv` keeps (or will keep) the venv of ``kind``: ``<cache>/<kind>-<hash>``."""
    _check_kind(kind)
    root = cache_dir if cache_dir is not None else cache_root()
    return root.resolve() / f"{kind}-{_fingerprint(kind)}"


def venv_info(venv: Path) -> VenvInfo:
    """The :class:`VenvInfo` of a venv made by :func:`ensure_venv`."""
    try:
        raw = json.loads((venv / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelServerError(
            f"{venv} is not a ready model-server venv ({exc}); build it with ensure_venv()"
        ) from exc
    return VenvInfo(
        kind=raw["kind"],
        path=venv,
        python=Path(raw["python"]),
        python_version=raw["python_version"],
        site_packages=Path(raw["site_packages"]),
        python_libdir=Path(raw["python_libdir"]),
        install_seconds=float(raw["install_seconds"]),
    )


def triton_dist(info: VenvInfo) -> Path:
    """The Triton distribution (``bin/tritonserver``, ``backends/``) inside a triton venv."""
    return info.site_packages / _TRITON_DIST


def _check_kind(kind: str) -> None:
    if kind not in get_args(ServerKind):
        raise ModelServerError(
            f"unknown model server kind {kind!r}, expected one of {get_args(ServerKind)}"
        )


def _fingerprint(kind: ServerKind) -> str:
    h = hashlib.sha256()
    h.update(f"{kind} recipe {_RECIPE} ".encode())
    # The venv links to its base interpreter: another interpreter needs another venv.
    h.update(f"{sys.implementation.name}{sys.version_info[0]}.{sys.version_info[1]}".encode())
    h.update(os.path.realpath(sys.base_prefix).encode())
    h.update(requirements_file(kind).read_bytes())
    return h.hexdigest()[:12]


def _uv() -> Path | None:
    uv = _REPO / ".tools" / "bin" / "uv"
    return uv if uv.is_file() and os.access(uv, os.X_OK) else None


@contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, polled until ``timeout`` (another install may hold it)."""
    deadline = time.monotonic() + timeout
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ModelServerError(
                        f"timed out after {timeout:.0f}s waiting for the install lock {path}; "
                        "another install may be stuck"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _install(venv: Path, requirements: Path, uv: Path | None, log: Path) -> None:
    python = venv / "bin" / "python"
    if uv is not None:
        steps = [
            [str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)],
            [
                str(uv),
                "pip",
                "install",
                "--compile-bytecode",
                "--python",
                str(python),
                "-r",
                str(requirements),
            ],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-r",
                str(requirements),
            ],
        ]
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "PIP_NO_INPUT": "1"}
    for var in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"):
        env.pop(var, None)
    with log.open("w", encoding="utf-8") as out:
        for argv in steps:
            _run(argv, env, out, log)


def _run(argv: Sequence[str], env: dict[str, str], out: TextIO, log: Path) -> None:
    out.write(f"$ {' '.join(argv)}\n")
    out.flush()
    try:
        done = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=_INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ModelServerError(
            f"`{' '.join(argv[:3])}` did not finish within {_INSTALL_TIMEOUT_S:.0f}s; "
            f"see {log}:\n{tail(log)}"
        ) from None
    if done.returncode != 0:
        raise ModelServerError(
            f"installing a model-server venv failed: `{' '.join(argv)}` exited with "
            f"{done.returncode}; see {log}:\n{tail(log)}"
        )


#: Run by the venv's interpreter: where its libpython and site-packages are.
_DESCRIBE = """
import json, sys, sysconfig
print(json.dumps({
    "python_version": "%d.%d" % sys.version_info[:2],
    "site_packages": sysconfig.get_paths()["purelib"],
    "python_libdir": sysconfig.get_config_var("LIBDIR") or "",
    "ldlibrary": sysconfig.get_config_var("LDLIBRARY") or "",
    "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
}))
"""


def _describe(kind: ServerKind, venv: Path, seconds: float) -> VenvInfo:
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", _DESCRIBE], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise ModelServerError(
            f"the new venv's interpreter {python} does not run (exit {done.returncode}):\n"
            f"{done.stderr[-2000:]}"
        )
    raw = json.loads(done.stdout)
    libpython = Path(raw["python_libdir"]) / raw["ldlibrary"]
    if kind == "triton" and not (raw["shared"] and libpython.is_file()):
        raise ModelServerError(
            f"{sys.executable} has no shared libpython (expected {libpython}); Triton's Python "
            "backend embeds libpython, so run the tests with a Python built with --enable-shared"
        )
    return VenvInfo(
        kind=kind,
        path=venv,
        python=python,
        python_version=raw["python_version"],
        site_packages=Path(raw["site_packages"]),
        python_libdir=Path(raw["python_libdir"]),
        install_seconds=round(seconds, 2),
    )


def _install_triton_stub(info: VenvInfo) -> None:
    """Put the backend stub for the venv's Python where Triton's Python backend looks for it.

    pytriton ships one stub per Python version and copies the right one at run time; the
    stub finds pytriton's bundled libraries through its RPATH (``$ORIGIN/../../../..``), so
    it must sit in ``backends/python`` of this very distribution, not in a copy of it.
    """
    dist = triton_dist(info)
    stubs = dist / "python_backend_stubs"
    source = stubs / info.python_version / "triton_python_backend_stub"
    if not source.is_file():
        found = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
        raise ModelServerError(
            f"nvidia-pytriton has no Python backend stub for Python {info.python_version} "
            f"(it has {found}); run the tests with one of those Pythons"
        )
    target = dist / "backends" / "python" / source.name
    # Copy then rename: the venv's files may be hard links into uv's cache, never write through one.
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copy2(source, tmp)
    os.replace(tmp, target)


def _write_marker(info: VenvInfo) -> None:
    raw = {
        "kind": info.kind,
        "python": str(info.python),
        "python_version": info.python_version,
        "site_packages": str(info.site_packages),
        "python_libdir": str(info.python_libdir),
        "install_seconds": info.install_seconds,
    }
    marker = info.path / _MARKER
    tmp = marker.with_name(f"{marker.name}.tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, marker)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ("" if it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
