"""Content-addressed storage for large context values: the file name is the value's sha256.

A blob is written to a temporary name and renamed into place, so a reader never sees a
partial blob and two writers of the same content cannot conflict. Reads check the digest.
A local folder by default; any fsspec URL (``s3://bucket/prefix``) with the ``blobs`` extra.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, Protocol

from synapse_steps.errors import JournalError


class BlobStore(Protocol):
    """Where large context values are kept by content hash; the journal rows hold only the digest."""

    location: str

    def put(self, data: bytes) -> str:
        """Store ``data`` under its sha256 and return the digest; storing the same bytes twice is a no-op."""

    def get(self, digest: str) -> bytes:
        """The bytes stored under ``digest``.

        Raises:
            JournalError: the blob is missing or its content does not match the digest.
        """

    def delete(self, digest: str) -> None:
        """Remove a blob (pruning); a missing blob is not an error."""


def digest_of(data: bytes) -> str:
    """The content address of ``data`` (sha256, hex)."""
    return hashlib.sha256(data).hexdigest()


def _checked(location: str, digest: str, data: bytes) -> bytes:
    if digest_of(data) != digest:
        raise JournalError(f"blob {digest} in {location} is corrupt (its content does not match its sha256)")
    return data


class LocalBlobStore:
    """Blobs as files ``ROOT/ab/abcdef...`` (two-character fan-out keeps folders small)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Write the blob to a temporary file, fsync, then rename, so a crash never leaves half a blob."""
        digest = digest_of(data)
        path = self._path(digest)
        if path.exists():
            return digest
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError as exc:
            raise JournalError(f"blob store {self.location}: cannot write: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise JournalError(f"blob store {self.location}: cannot write blob {digest}: {exc}") from exc
            raise
        return digest

    def get(self, digest: str) -> bytes:
        """Read and verify a blob; JournalError if it is missing or corrupt."""
        try:
            data = self._path(digest).read_bytes()
        except FileNotFoundError:
            raise JournalError(f"blob {digest} is missing from {self.location}") from None
        return _checked(self.location, digest, data)

    def delete(self, digest: str) -> None:
        """Remove a blob file; a missing one is not an error."""
        self._path(digest).unlink(missing_ok=True)


class FsspecBlobStore:
    """Blobs under an fsspec URL, same layout as :class:`LocalBlobStore`."""

    def __init__(self, url: str) -> None:
        try:
            import fsspec
        except ImportError:
            raise JournalError(f'blob store {url!r} needs fsspec: pip install "synapse-steps[blobs]"') from None
        self.fs: Any
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.location = url

    def _path(self, digest: str) -> str:
        return f"{self.root.rstrip('/')}/{digest[:2]}/{digest}"

    def put(self, data: bytes) -> str:
        """Write the blob under a temporary name, then move it into place, unless it is already there."""
        digest = digest_of(data)
        path = self._path(digest)
        if self.fs.exists(path):
            return digest
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, path)
        return digest

    def get(self, digest: str) -> bytes:
        """Read and verify a blob; JournalError if it is missing or corrupt."""
        try:
            data = self.fs.cat_file(self._path(digest))
        except FileNotFoundError:
            raise JournalError(f"blob {digest} is missing from {self.location}") from None
        return _checked(self.location, digest, data)

    def delete(self, digest: str) -> None:
        """Remove a blob; a missing one is not an error."""
        path = self._path(digest)
        if self.fs.exists(path):
            self.fs.rm_file(path)


def open_store(location: str) -> BlobStore:
    """A local folder for a plain path or ``file://`` URL, else an fsspec store."""
    if "://" not in location:
        return LocalBlobStore(location)
    if location.startswith("file://"):
        return LocalBlobStore(location[len("file://") :])
    return FsspecBlobStore(location)
