"""The deployment store: immutable, content-addressed versions, the active pointer, the log.

Layout under the store's root (a local folder, or any fsspec URL: ``s3://bucket/muse``):

```
objects/<ab>/<sha256>            every file of every version, once (content-addressed)
versions/<id>.json               a version's manifest: relative path → digest, who, when
active.json                      which version is active (and since when, by whom)
promotions/<pid>.json            a promotion: its version, state, activation time
promotion.json                   the newest promotion (what replicas poll)
promotions/<pid>/<replica>.json  each replica's answer: prepared, or refused and why
replicas/<replica>.json          each replica's heartbeat: the version it serves
log/<time>-<rand>.json           the audit log: one object per event, never rewritten
```

Every object is written whole, once (a local folder: written beside, then renamed; an
object store: one PUT), so a reader never sees half a file, and nothing needs appends or
locks — which object stores do not offer. The version id is a digest of the manifest's
files: publishing the same bundle twice yields the same version, and a version's content
can never change under its id.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from muse.errors import MuseError

__all__ = ["DeploymentStore", "StoreError", "VersionRecord", "actor", "now_iso", "version_id"]

_CHUNK = 1 << 20


class StoreError(MuseError, RuntimeError):
    """The deployment store cannot be read or written, or lacks what was asked for."""


def now_iso() -> str:
    """The current UTC time, ISO 8601 with microseconds (the store's timestamps)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def actor() -> str:
    """Who acts, for the audit log: ``$MUSE_ACTOR``, else ``user@host``."""
    named = os.environ.get("MUSE_ACTOR")
    if named:
        return named
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - a container without a passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def version_id(files: Mapping[str, str]) -> str:
    """The id of a version whose files (relative path → sha256) are ``files``."""
    canonical = json.dumps(dict(sorted(files.items())), separators=(",", ":"))
    return "v-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """A published version: its id, the config's own ``version`` name, its files, provenance."""

    id: str
    config_version: str
    files: Mapping[str, str]
    published_at: str
    published_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "config_version": self.config_version,
            "files": dict(self.files),
            "published_at": self.published_at,
            "published_by": self.published_by,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VersionRecord:
        return cls(
            id=str(d["id"]),
            config_version=str(d["config_version"]),
            files={str(k): str(v) for k, v in d["files"].items()},
            published_at=str(d["published_at"]),
            published_by=str(d["published_by"]),
        )


class DeploymentStore:
    """A deployment store at ``url`` (a folder path, or an fsspec URL).

    Every method reads or writes the store directly: replicas and operators on different
    machines share nothing else. Constructing one does no I/O.
    """

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        try:
            self._fs, root = fsspec.core.url_to_fs(self.url)
        except (ValueError, ImportError) as e:
            raise StoreError(f"cannot open deployment store {self.url!r}: {e}") from None
        self._root = root.rstrip("/")
        self._local = isinstance(self._fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"DeploymentStore({self.url!r})"

    # -- objects ----------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join((self._root, *parts))

    def _object(self, digest: str) -> str:
        return self._path("objects", digest[:2], digest)

    def has_object(self, digest: str) -> bool:
        return bool(self._io(self._fs.exists, self._object(digest)))

    def put_file(self, path: Path) -> tuple[str, bool]:
        """Store the file at ``path`` under its digest; (digest, whether it was new)."""
        digest = _file_sha256(path)
        if self.has_object(digest):
            return digest, False
        self._write(self._object(digest), path.read_bytes())
        return digest, True

    def put_bytes(self, data: bytes) -> tuple[str, bool]:
        """Store ``data`` under its digest; (digest, whether it was new)."""
        digest = hashlib.sha256(data).hexdigest()
        if self.has_object(digest):
            return digest, False
        self._write(self._object(digest), data)
        return digest, True

    def get_object(self, digest: str) -> bytes:
        """Object ``digest``'s bytes, verified against its digest."""
        try:
            got: bytes | BaseException | None = bytes(self._fs.cat_file(self._object(digest)))
        except OSError as e:
            got = e
        return self._verified(digest, got)

    def _verified(self, digest: str, got: bytes | BaseException | None) -> bytes:
        """``got`` (what reading object ``digest`` gave) if it is that object, else the
        StoreError saying what is wrong: missing, unreadable or corrupt."""
        if got is None or isinstance(got, FileNotFoundError):
            raise StoreError(
                f"{self.url}: object {digest} is missing (a version's file was deleted from the store)"
            )
        if isinstance(got, BaseException):
            raise StoreError(f"{self.url}: cannot read object {digest}: {got}")
        if hashlib.sha256(got).hexdigest() != digest:
            raise StoreError(
                f"{self.url}: object {digest} is corrupt (its content hashes differently)"
            )
        return got

    # -- documents --------------------------------------------------------------------------

    def read_json(self, *parts: str) -> dict[str, Any] | None:
        """The JSON document at ``parts`` under the root, None if absent."""
        path = self._path(*parts)
        try:
            raw = self._fs.cat_file(path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"{self.url}: cannot read {'/'.join(parts)}: {e}") from None
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as e:
            raise StoreError(f"{self.url}: {'/'.join(parts)} is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise StoreError(f"{self.url}: {'/'.join(parts)} must hold a JSON object")
        return doc

    def write_json(self, doc: Mapping[str, Any], *parts: str) -> None:
        """Write ``doc`` at ``parts`` whole (readers see the old or the new, never half)."""
        self._write(self._path(*parts), json.dumps(doc, indent=1, sort_keys=True).encode())

    def list_json(self, *parts: str) -> list[str]:
        """Names (without ``.json``) of the documents directly under ``parts``, sorted."""
        path = self._path(*parts)
        try:
            entries = self._fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"{self.url}: cannot list {'/'.join(parts)}: {e}") from None
        names = [str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries]
        return sorted(n[: -len(".json")] for n in names if n.endswith(".json"))

    def delete(self, *parts: str) -> None:
        path = self._path(*parts)
        try:
            self._fs.rm_file(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StoreError(f"{self.url}: cannot delete {'/'.join(parts)}: {e}") from None

    def _write(self, path: str, data: bytes) -> None:
        try:
            parent = path.rsplit("/", 1)[0]
            self._fs.makedirs(parent, exist_ok=True)
            if self._local:
                # Beside, then renamed: a reader (another replica) never sees a partial file.
                tmp = f"{path}.{secrets.token_hex(6)}.tmp"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            else:
                self._fs.pipe_file(path, data)  # one PUT: atomic on object stores
        except OSError as e:
            raise StoreError(f"{self.url}: cannot write {path}: {e}") from None

    def _io(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as e:
            raise StoreError(f"{self.url}: {e}") from None

    # -- versions ---------------------------------------------------------------------------

    def add_version(self, record: VersionRecord) -> bool:
        """Record a published version (its objects must be stored); False if it existed."""
        if self.read_json("versions", f"{record.id}.json") is not None:
            return False
        missing = [d for d in record.files.values() if not self.has_object(d)]
        if missing:
            raise StoreError(f"{self.url}: version {record.id} names objects not stored: {missing}")
        self.write_json(record.to_dict(), "versions", f"{record.id}.json")
        return True

    def version(self, vid: str) -> VersionRecord:
        """The manifest of version ``vid``; :class:`StoreError` naming the known ones if absent."""
        _check_id(vid)
        doc = self.read_json("versions", f"{vid}.json")
        if doc is None:
            known = self.list_json("versions")
            raise StoreError(
                f"{self.url} has no version {vid!r}; published: {known or 'none'} (muse versions)"
            )
        return VersionRecord.from_dict(doc)

    def versions(self) -> list[VersionRecord]:
        """Every published version, oldest first."""
        records = [self.version(v) for v in self.list_json("versions")]
        return sorted(records, key=lambda r: (r.published_at, r.id))

    def materialize(self, vid: str, cache: Path) -> Path:
        """Version ``vid`` unpacked under ``cache/<vid>/`` (verified, reused when present);
        returns the path of its ``muse.yaml``.

        Each object is fetched once into ``cache/objects/`` and every version's file is a
        hard link to it (a copy where links are not possible): a version that changes 1,000
        of 10,000 tenant maps downloads 1,000 files, and its unchanged files are the very
        files the live version loaded — which the artifact cache recognises
        (:func:`muse.artifacts.load_artifact`), so they are not parsed again. Unpacked
        beside and renamed into place, so a replica killed half-way leaves no half version
        that a later start would trust.
        """
        _check_id(vid)  # a path is made of it below
        target = cache / vid
        done = target / ".complete"
        if done.is_file():
            return target / "muse.yaml"
        cache.mkdir(parents=True, exist_ok=True)
        # The worker processes of one machine share the cache: one unpacks, the others
        # wait for it instead of fetching every object again (a file lock, released by the
        # kernel if the holder dies).
        with open(cache / f".{vid}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if done.is_file():
                    return target / "muse.yaml"
                return self._unpack(vid, cache, target, done)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _unpack(self, vid: str, cache: Path, target: Path, done: Path) -> Path:
        record = self.version(vid)
        objects = cache / "objects"
        tmp = cache / f".{vid}.{secrets.token_hex(4)}.tmp"
        made: set[Path] = set()  # folders created: one mkdir each, not one per file
        try:
            self._fetch_missing(objects, set(record.files.values()), made)
            for rel, digest in record.files.items():
                source = objects / digest[:2] / digest
                dest = tmp / rel
                _mkdir(dest.parent, made)
                try:
                    os.link(source, dest)
                except OSError:
                    shutil.copyfile(source, dest)
            (tmp / ".complete").write_text(record.id)
            try:
                os.replace(tmp, target)
            except OSError:
                if not done.is_file():  # not another process that unpacked it first
                    raise
        except OSError as e:
            raise StoreError(f"cannot unpack version {vid} into {cache}: {e}") from None
        finally:
            if tmp.exists():
                _rmtree(tmp)
        return target / "muse.yaml"

    def _fetch_missing(self, objects: Path, digests: set[str], made: set[Path]) -> None:
        """Bring every object of ``digests`` the local cache lacks, verified.

        One batched read for all of them — fsspec reads a batch concurrently from object
        stores, where one GET at a time would make a promotion of 1,000 maps take minutes.
        From a local folder store, a verified object is hard-linked, not copied.
        """
        missing = sorted(d for d in digests if not (objects / d[:2] / d).is_file())
        if not missing:
            return
        paths = [self._object(d) for d in missing]
        try:
            found = self._fs.cat(paths, on_error="return")
        except OSError as e:
            raise StoreError(f"{self.url}: cannot read objects: {e}") from None
        for digest, path in zip(missing, paths, strict=True):
            data = self._verified(digest, found.get(path) if isinstance(found, dict) else None)
            local = objects / digest[:2] / digest
            _mkdir(local.parent, made)
            if self._local:
                try:
                    os.link(path, local)
                    continue
                except FileExistsError:
                    continue
                except OSError:
                    pass  # another filesystem: copy below
            part = local.with_name(f".{digest}.{secrets.token_hex(4)}")
            part.write_bytes(bytes(data))
            os.replace(part, local)

    # -- the active version and the audit log --------------------------------------------

    def active(self) -> dict[str, Any] | None:
        """The active pointer: ``{version, activate_at, promotion, by, at, previous}``."""
        return self.read_json("active.json")

    def set_active(self, doc: Mapping[str, Any]) -> None:
        self.write_json(doc, "active.json")

    def log(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append ``event`` to the audit log (one new object; the log is never rewritten)."""
        at = now_iso()
        doc = {"event": event, "at": at, "by": fields.pop("by", None) or actor(), **fields}
        stamp = at.replace(":", "").replace("-", "").replace("+0000", "Z")
        self.write_json(doc, "log", f"{stamp}-{secrets.token_hex(3)}.json")
        return doc

    def history(self) -> list[dict[str, Any]]:
        """The audit log, oldest first."""
        out = []
        for name in self.list_json("log"):
            doc = self.read_json("log", f"{name}.json")
            if doc is not None:
                out.append(doc)
        return sorted(out, key=lambda d: str(d.get("at", "")))


_VERSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _check_id(vid: str) -> None:
    """A version id names one file and one folder: letters, digits, ``._-``, not hidden."""
    if not isinstance(vid, str) or not _VERSION_ID.fullmatch(vid):
        raise StoreError(f"{vid!r} is not a version id (e.g. v-0123456789abcdef)")


def _mkdir(folder: Path, made: set[Path]) -> None:
    if folder not in made:
        folder.mkdir(parents=True, exist_ok=True)
        made.add(folder)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
