"""A checkpoint in a local file, used only when asked for (``--state file://PATH``).

* The path is everything after ``file://``, taken literally: ``?`` and ``#`` are part of the name,
  and nothing is percent-decoded (``file:///abs/path`` is absolute, ``file://rel/path`` relative).
* The directory must exist: a typo in the path fails (exit 1) instead of looking like a first run.
  A missing file in it is "no checkpoint yet".
* Only regular files are read or written: a FIFO, a device or a directory is refused at once (a FIFO
  would block the read forever). A symlink is followed, and the write replaces its target, never
  the link itself.
* Writes are atomic (temporary file, fsync, rename) and carry a precondition, like the other stores:
  under an exclusive ``flock`` on a lock file next to the target, the current content's SHA-256 must
  still be the version that was read, else StoreConflict. Two runs without a Lease on one file store
  therefore cannot both succeed: the second to reach the lock finds the first one's checkpoint. The
  lock file (``.<name>.lock``) stays: removing it would let a waiter lock an unlinked inode.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from state.base import StoreConflict, StoreError


class FileStore:
    max_bytes: int | None = None

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.name = f"file://{path}"

    def load(self) -> tuple[bytes | None, str | None]:
        data = self._read(Path(os.path.realpath(self.path)))
        return data, (None if data is None else hashlib.sha256(data).hexdigest())

    def save(self, data: bytes, version: str | None) -> str:
        # The Lease is the lock between runs; this precondition catches a second writer without one.
        target = Path(os.path.realpath(self.path))
        try:
            lock_fd = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(self._oserror("write", exc, target)) from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            current = self._read(target)
            if (None if current is None else hashlib.sha256(current).hexdigest()) != version:
                raise StoreConflict(f"checkpoint {self.name} was changed by someone else since it was read; "
                                    "not overwriting it")
            self._replace(target, data)
        finally:
            os.close(lock_fd)  # closing drops the flock
        return hashlib.sha256(data).hexdigest()

    def _read(self, target: Path) -> bytes | None:
        try:
            # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            if not target.parent.is_dir():
                raise StoreError(self._no_directory(target)) from None
            return None
        except OSError as exc:
            raise StoreError(self._oserror("read", exc, target)) from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise StoreError(self._not_regular(mode))
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read()
        except OSError as exc:
            raise StoreError(self._oserror("read", exc, target)) from None
        finally:
            os.close(fd)

    def _replace(self, target: Path, data: bytes) -> None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
        except OSError as exc:
            raise StoreError(self._oserror("write", exc, target)) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)  # atomic: a crash leaves the old or the new file, never half
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StoreError(self._oserror("write", exc, target)) from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _no_directory(self, target: Path) -> str:
        return (f"checkpoint {self.name}: directory {target.parent} does not exist; create it "
                f"(mkdir -p {target.parent}) or fix --state")

    def _not_regular(self, mode: int) -> str:
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        return f"checkpoint {self.name} is {kind}, not a regular file; point --state at a regular file"

    def _oserror(self, verb: str, exc: OSError, target: Path) -> str:
        if exc.errno == errno.ENOENT:
            return self._no_directory(target)
        return f"cannot {verb} checkpoint {self.name}: {exc.strerror}"
