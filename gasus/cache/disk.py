"""diskcache's serialisation with values as JSON text: nothing is ever unpickled."""

from __future__ import annotations

import io
import json
import pickle
import sqlite3
from pathlib import Path
from typing import Any

import diskcache

from ..io import loads_json


class PickledKey(bytes):
    """A key diskcache stored as a pickle: never loaded, only counted and deleted."""


class BrokenEntry(ValueError):
    """A stored value gasus does not load: not JSON, or a file outside the cache directory."""

    reason = "is not a JSON value"


class PickledValue(BrokenEntry):
    """A value stored as a pickle (by an older gasus, or a crafted cache): never loaded."""

    reason = "is stored as a pickle"

    def __init__(self, filename: str | None, data: bytes | None):
        super().__init__(self.reason)
        self.filename, self.data = filename, data


class JsonDisk(diskcache.Disk):
    """diskcache's serialisation, with values as JSON text and nothing ever unpickled.

    diskcache's own Disk pickles every value that is not a str, bytes or number, and unpickles
    it on read: a crafted cache directory would run code. Values here are JSON; a pickled
    key or value is refused, and files are read and removed only inside the cache directory.
    """

    def put(self, key: Any) -> tuple[Any, bool]:
        if isinstance(key, PickledKey):
            return sqlite3.Binary(key), False
        if type(key) not in (str, bytes, int, float):
            raise TypeError(f"cache keys are strings, not {type(key).__name__}")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        return super().get(key, raw) if raw else PickledKey(key)

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> tuple:
        if read:
            raise TypeError("the gasus cache stores JSON values, not files")
        return super().store(json.dumps(value, ensure_ascii=False, separators=(",", ":")), False, key=key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE:
            raise PickledValue(filename, None if value is None else bytes(value))
        if filename is not None:
            self._inside(filename)
        try:
            return loads_json(super().fetch(mode, filename, value, read))
        except (TypeError, ValueError):  # a crafted row: bytes, or text that is not JSON
            raise BrokenEntry(BrokenEntry.reason) from None

    def remove(self, file_path: str) -> None:
        self._inside(file_path)
        super().remove(file_path)

    def _inside(self, filename: str) -> Path:
        root = Path(self._directory).resolve()
        path = (root / filename).resolve()
        if root not in path.parents:  # a crafted row pointing out of the cache: never followed
            raise BrokenEntry(f"names a file outside the cache ({filename})")
        return path

    def legacy_value(self, entry: PickledValue) -> Any:
        """What an older gasus pickled, read by an unpickler that cannot call or import anything:
        dicts, lists, strings and numbers load, anything else raises pickle.UnpicklingError."""
        data = entry.data
        if data is None:
            data = self._inside(entry.filename or "").read_bytes()
        return _DataOnlyUnpickler(io.BytesIO(data)).load()


class _DataOnlyUnpickler(pickle.Unpickler):
    # The "restricting globals" recipe of the pickle docs, restricted to nothing.
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not data")
