"""A real browser for the console's tests: Debian's Chromium, driven by Playwright.

No browser is downloaded: Playwright (from PyPI) drives the system's ``chromium``, which
:func:`ensure_chromium` installs from Debian's packages when it is missing (root needed,
as for the image tests' Docker engine).
"""

from __future__ import annotations

import shutil

from tests.debian import apt_install

__all__ = ["BrowserError", "ensure_chromium"]

PACKAGES = ("chromium",)


class BrowserError(RuntimeError):
    """Chromium could not be found or installed."""


def ensure_chromium() -> str:
    """The path of Debian's Chromium, installing it (``apt-get install chromium``) if absent."""
    found = shutil.which("chromium")
    if found:
        return found
    problem = apt_install(PACKAGES, "the console's browser tests")
    found = shutil.which("chromium")
    if problem is not None or not found:
        raise BrowserError(problem or "chromium installed, but not on the PATH")
    return found
