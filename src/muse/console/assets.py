"""The console's third-party browser code, fetched from the npm registry at build time.

Charts are drawn by Vega-Lite (through vega-embed): a declarative, well-kept library whose
specs the server writes as JSON. The files are taken from the packages' own tarballs on
the npm registry — pinned by version and checked against the registry's SHA-512
integrity — and shipped inside the Python package (``static/vendor``), so the console
never loads anything from a CDN at run time and works air-gapped.

Why not npm: a machine with only Python and pip can build muse; the three files are plain
UMD builds that need no bundling, so downloading and checking three tarballs is all npm
would do here.

``python -m muse.console.assets`` fetches whatever is missing (``make setup`` runs it).
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from muse.errors import MuseError

__all__ = ["VENDOR", "VENDOR_DIR", "AssetError", "VendorFile", "ensure_assets", "missing_assets"]

VENDOR_DIR = Path(__file__).parent / "static" / "vendor"
REGISTRY = "https://registry.npmjs.org"


class AssetError(MuseError, RuntimeError):
    """A vendored browser file is missing and could not be fetched, or did not verify."""


@dataclass(frozen=True, slots=True)
class VendorFile:
    """One file out of one npm package tarball, with the tarball's integrity."""

    package: str
    version: str
    member: str
    integrity: str

    @property
    def name(self) -> str:
        return Path(self.member).name

    @property
    def tarball(self) -> str:
        return f"{REGISTRY}/{self.package}/-/{self.package}-{self.version}.tgz"


_VEGA = ("vega", "6.4.0", "sha512-rHXCq2LpEWCLMjXBEj7hocY9G0/i5TGYRayGGSj06VTF4+l2IG2Z7oeZKCjWbUh/7hTE/mVhbaOPB72wCElh6g==")  # fmt: skip
_VEGA_LITE = ("vega-lite", "6.5.0", "sha512-fMXF6s0MrIg0UTWnLIfeFtgSLzVhyzSKobzGrh5rhS+mL6FOYFG3m7ouJ4U23gj65EK+gl9FIIT5w7wLNaAzkA==")  # fmt: skip
_VEGA_EMBED = ("vega-embed", "7.3.0", "sha512-wQ8s5GaSzqoKgmRfbRolgBrjE2CP7ZKHXqH7NijxMqPjpdWxSs4Dn8tvp9g0giQvh2cK+3p56sxjWWM0wNngGw==")  # fmt: skip

#: Every vendored file (all three packages are BSD-3-Clause; their licences ship beside).
VENDOR: tuple[VendorFile, ...] = (
    VendorFile(_VEGA[0], _VEGA[1], "package/build/vega.min.js", _VEGA[2]),
    VendorFile(_VEGA_LITE[0], _VEGA_LITE[1], "package/build/vega-lite.min.js", _VEGA_LITE[2]),
    VendorFile(_VEGA_EMBED[0], _VEGA_EMBED[1], "package/build/vega-embed.min.js", _VEGA_EMBED[2]),
)


def missing_assets(folder: Path = VENDOR_DIR) -> list[str]:
    """Names of the vendored files not in ``folder``."""
    return [f.name for f in VENDOR if not (folder / f.name).is_file()]


def ensure_assets(folder: Path = VENDOR_DIR, *, timeout_s: float = 60.0) -> list[Path]:
    """Fetch every vendored file missing from ``folder`` (and its package's licence);
    returns the files written. Raises :class:`AssetError` naming the package on a
    download or integrity failure."""
    written = []
    for item in VENDOR:
        target = folder / item.name
        if target.is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        data = _download(item, timeout_s)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            target.write_bytes(_member(tar, item, item.member))
            licence = _member(tar, item, "package/LICENSE")
            (folder / f"{item.package}.LICENSE").write_bytes(licence)
        written.append(target)
    return written


def _download(item: VendorFile, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(item.tarball, timeout=timeout_s) as answer:  # a fixed https URL
            data: bytes = answer.read()
    except OSError as e:
        raise AssetError(
            f"cannot fetch {item.package}@{item.version} from {item.tarball}: {e} "
            "(the console's charts need it; run `python -m muse.console.assets` with access "
            "to the npm registry)"
        ) from e
    algorithm, _, expected = item.integrity.partition("-")
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != expected:
        raise AssetError(
            f"{item.package}@{item.version} from {item.tarball} does not match its pinned "
            f"integrity {item.integrity} (got {algorithm}-{got})"
        )
    return data


def _member(tar: tarfile.TarFile, item: VendorFile, member: str) -> bytes:
    try:
        handle = tar.extractfile(member)
    except KeyError:
        handle = None
    if handle is None:
        raise AssetError(f"{item.package}@{item.version} has no {member}")
    return handle.read()


def main() -> int:
    """Fetch what is missing; print what was written."""
    try:
        for path in ensure_assets():
            print(f"fetched {path.name}")
    except AssetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
