"""A checkpoint in a local file: the default off-cluster, for development and --from-file runs."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from state.base import StoreConflict, StoreError


class FileStore:
    max_bytes: int | None = None

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.name = f"file://{path}"

    def load(self) -> tuple[bytes | None, str | None]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise StoreError(f"cannot read checkpoint {self.name}: {exc.strerror}") from None
        return data, hashlib.sha256(data).hexdigest()

    def save(self, data: bytes, version: str | None) -> str:
        # The Lease is the real lock; this check only catches a second writer that ignored it.
        _, current = self.load()
        if current != version:
            raise StoreConflict(f"checkpoint {self.name} changed since it was read; not overwriting it")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)  # atomic: a crash leaves the old or the new file, never half
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreError(f"cannot write checkpoint {self.name}: {exc.strerror}") from None
        return hashlib.sha256(data).hexdigest()
