"""Installing Debian's packages a test needs (Docker engine, Chromium) when they are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

__all__ = ["apt_install"]


def apt_install(packages: Sequence[str], purpose: str) -> str | None:
    """``apt-get install -y --no-install-recommends PACKAGES`` (refreshing the package lists
    once if the first try fails); None on success, else why it failed, naming ``purpose``
    and the install line. Needs root, as installing packages does."""
    line = f"apt-get install {' '.join(packages)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{purpose} need Debian's {', '.join(packages)}, and root to install them: {line}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    if done.returncode != 0:  # a machine whose package lists were never fetched
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, check=False)
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    return None if done.returncode == 0 else f"{line} failed: {done.stderr[-2000:]}"
