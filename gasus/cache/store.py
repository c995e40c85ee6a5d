"""The cache directory (location, marker, storage format) and `Cache` over it, claims included."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import diskcache

from ..errors import BadInputError, CacheError
from .disk import BrokenEntry, JsonDisk, PickledKey, PickledValue
from .entries import (
    CLAIM,
    INTERNAL_PREFIXES,
    ImportReport,
    MigrateReport,
    VerifyReport,
    entry_problem,
    value_problem,
)

STORAGE = 2  # of the directory: 1 pickled values (diskcache's default), 2 JSON text
MARKER = "gasus-cache.json"
MODELS = "models"  # base models `gasus train` dequantized, beside the store (train.converted_gguf_dir)
# A claim whose holder neither answers nor dies lapses after this long. A run claims all it will
# ask at its start; a holder on another host sharing the directory is trusted for this long.
CLAIM_SECONDS = 6 * 3600.0
GET_MANY_BLOCK = 900  # keys per query of Cache.get_many (SQLite allows 999 parameters in older builds)


def _alive(holder: dict[str, Any]) -> bool:
    """Whether a claim's holder may still answer: a process of this host that is gone never will."""
    if holder.get("host") != socket.gethostname():
        return True  # another machine's run: its claim lapses with time
    if not isinstance(holder.get("pid"), int) or holder["pid"] <= 0:
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's live process
        return True
    return True


def default_cache_dir() -> Path:
    """$GASUS_CACHE_DIR, else $XDG_CACHE_HOME/gasus, else ~/.cache/gasus."""
    if os.environ.get("GASUS_CACHE_DIR"):
        return Path(os.environ["GASUS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gasus"


def prepare_cache_dir(directory: str | Path | None = None) -> Path:
    """The cache dir, created and marked as gasus's own: whatever gasus writes there goes
    through here first, so the directory stays one every command opens.

    A directory that holds anything else and no marker is refused, except one holding only
    the converted models of an older `gasus train`, which wrote them without the marker.
    """
    d = Path(directory).expanduser() if directory else default_cache_dir()
    marker = d / MARKER
    if d.exists() and not d.is_dir():
        raise CacheError(f"{d}: the cache location exists and is not a directory")
    if d.is_dir() and not _marked_or_unused(d):
        raise CacheError(
            f"{d}: not a gasus cache (no {MARKER}); point GASUS_CACHE_DIR at an empty or gasus directory"
        )
    try:
        d.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            write_marker(d)
        probe = d / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise CacheError(f"{d}: the cache directory is not writable: {exc.strerror}") from None
    marker_storage(d)
    return d


def write_marker(d: Path) -> None:
    """Write the marker whole (through a temporary file and a rename): a second process opening
    the directory at the same moment reads either no marker or a complete one."""
    tmp = d / f".{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"gasus_cache": STORAGE}) + "\n")
    os.replace(tmp, d / MARKER)


def marker_storage(d: Path) -> int:
    """The storage format a cache dir's marker names: 1 (pickled values, an older gasus) or STORAGE."""
    try:
        storage = json.loads((d / MARKER).read_text()).get("gasus_cache")
    except (OSError, ValueError, AttributeError):
        storage = None
    if storage not in (1, STORAGE):
        raise CacheError(f"{d}: {MARKER} is not a gasus cache marker of storage format 1 or {STORAGE}")
    return storage


def _marked_or_unused(d: Path) -> bool:
    """Whether a directory holds the marker, or nothing but what gasus writes before it: the
    marker's and the write probe's temporary files (another process may be preparing the
    directory this very moment), and MODELS/gguf-* of an older `gasus train` (and their
    temporary dirs). One listing decides, so a marker written meanwhile is never missed."""
    entries = [p for p in d.iterdir() if not p.name.startswith((f".{MARKER}.", ".write-probe-"))]
    if not entries or any(p.name == MARKER for p in entries):
        return True
    if [p.name for p in entries] != [MODELS] or not entries[0].is_dir():
        return False
    return all(p.is_dir() and p.name.lstrip(".").startswith("gguf-") for p in entries[0].iterdir())


class Cache:
    """A diskcache-backed store of completions, safe to share between processes.

    Each entry holds {"value": ..., "backend", "model", "created"} as JSON; `get` returns the value.
    With `migrating=True` a directory of pickled values (an older gasus) opens, for `migrate`.
    """

    def __init__(self, directory: str | Path | None = None, *, migrating: bool = False):
        self.directory = prepare_cache_dir(directory)
        self.broken: list[str] = []  # keys of pickled entries met by `entries`
        storage = marker_storage(self.directory)
        try:
            self._store = diskcache.Cache(str(self.directory), disk=JsonDisk, eviction_policy="none",
                                          size_limit=2**62)
        except Exception as exc:  # sqlite3.OperationalError, PermissionError, a crafted Settings table
            raise CacheError(f"{self.directory}: cannot open the cache: {exc}") from None
        if storage != STORAGE:
            if len(self._store) and not migrating:
                raise CacheError(f"{self.directory}: the cache holds values pickled by an older gasus, which are "
                                 "never loaded; convert them once with `gasus cache migrate`")
            if not len(self._store):
                write_marker(self.directory)

    # -------------------------------------------------------------- entries

    def _entry(self, key: str) -> dict[str, Any] | None:
        try:
            return self._store.get(key)
        except BrokenEntry as exc:
            raise self._unreadable(key, exc) from None

    def _unreadable(self, key: str, exc: BrokenEntry) -> CacheError:
        return CacheError(f"{self.directory}: entry {key[:16]}… {exc}, which gasus never loads; "
                          "`gasus cache migrate` converts or drops such entries")

    def _misread(self, key: str, problem: str) -> CacheError:
        return CacheError(f"{self.directory}: entry {key[:16]}… {problem}, which gasus cannot read back; "
                          "`gasus cache verify` lists such entries and `gasus cache migrate` drops them")

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._entry(key)
        if entry is None:
            return None
        if key.startswith(INTERNAL_PREFIXES):  # memos: their readers check what they take
            return entry.get("value") if isinstance(entry, dict) else None
        problem = value_problem(entry)
        if problem:
            raise self._misread(key, problem)
        return entry["value"]

    def get_many(self, keys: Collection[str]) -> dict[str, dict[str, Any]]:
        """The cached values of many keys (those not cached are absent), read with one query per
        block of keys: a fully cached rerun of a million rows would otherwise make a million queries.
        diskcache has no bulk read, so this runs the query its `get` runs, for a block of keys."""
        select = ("SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN ({})"
                  " AND (expire_time IS NULL OR expire_time > ?)")
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), GET_MANY_BLOCK):
            block = wanted[start:start + GET_MANY_BLOCK]
            rows = self._store._sql(select.format(",".join("?" * len(block))), (*block, time.time())).fetchall()
            for key, mode, filename, value in rows:
                try:
                    entry = self._store.disk.fetch(mode, filename, value, False)
                except BrokenEntry as exc:
                    raise self._unreadable(key, exc) from None
                except OSError:  # its value file was removed meanwhile: not cached (as diskcache's get)
                    continue
                problem = value_problem(entry)
                if problem:
                    raise self._misread(key, problem)
                found[key] = entry["value"]
        return found

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def put(self, key: str, value: dict[str, Any], *, backend: str = "", model: str = "") -> None:
        self._store.set(key, {"value": value, "backend": backend, "model": model, "created": time.time()})

    def __len__(self) -> int:
        return len(self._store)

    # -------------------------------------------------------------- claims

    def claim(self, keys: list[str], token: str, *, refresh: Collection[str] = (),
              seconds: float = CLAIM_SECONDS) -> dict[str, str]:
        """Claim the right to ask the model for each key, so that two processes never pay for one call.

        Each key's state: "cached" (the answer is here; never for a key in `refresh`), "ours"
        (claimed for the run `token`: ask, then `put` and `release`) or "held" (another live
        run asks: wait for its answer). A claim lapses when its holder dies (on this host) or after `seconds`.
        """
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "token": token}
        states = {}
        with self._store.transact():  # one writer at a time: two runs cannot both claim a key
            for key in keys:
                held = self._claim_holder(key)
                if held is not None and held.get("token") != token and _alive(held):
                    states[key] = "held"
                elif key not in refresh and key in self._store:
                    states[key] = "cached"
                else:
                    self._store.set(CLAIM + key, {"value": holder, "backend": "claim", "model": "",
                                                  "created": time.time()}, expire=seconds)
                    states[key] = "ours"
        return states

    def release(self, keys: Collection[str], token: str) -> None:
        """Drop the claims of run `token` on `keys` (answered, failed or abandoned)."""
        with self._store.transact():
            for key in keys:
                held = self._claim_holder(key)
                if held is not None and held.get("token") == token:
                    self._store.delete(CLAIM + key)

    def _claim_holder(self, key: str) -> dict[str, Any] | None:
        try:
            entry = self._store.get(CLAIM + key)
        except BrokenEntry:
            return None  # an unreadable claim holds nothing
        value = entry.get("value") if isinstance(entry, dict) else None
        return value if isinstance(value, dict) else None

    def entries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every readable entry; the keys of pickled ones are collected in `self.broken` instead."""
        self.broken = []
        for key in self._store.iterkeys():
            if isinstance(key, PickledKey):
                self.broken.append(key.hex())
                continue
            try:
                entry = self._store.get(key)
            except BrokenEntry:
                self.broken.append(key)
                continue
            if entry is not None:  # None: deleted meanwhile
                yield key, entry

    # -------------------------------------------------------------- management

    def stats(self) -> dict[str, Any]:
        by_backend: dict[str, int] = {}
        for _, entry in self.entries():
            by_backend[entry.get("backend") or "?"] = by_backend.get(entry.get("backend") or "?", 0) + 1
        return {"directory": str(self.directory), "entries": len(self._store), "broken": len(self.broken),
                "bytes": self._store.volume(), "by_backend": dict(sorted(by_backend.items()))}

    def verify(self) -> VerifyReport:
        """Read every entry and check it, changing nothing: the database's own integrity check, then
        each key and value (JSON, a value file that exists, the shape of a model call's entry)."""
        report = VerifyReport()
        try:
            with sqlite3.connect(self.directory / "cache.db") as db:
                problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
        except sqlite3.Error as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            report.broken.append(("cache.db", "the database fails its integrity check: " + "; ".join(problems[:3])))
        for key in self._store.iterkeys():
            report.checked += 1
            if isinstance(key, PickledKey):
                report.broken.append((key.hex(), PickledValue.reason))
                continue
            try:
                entry = self._store.get(key)
            except BrokenEntry as exc:
                report.broken.append((key, str(exc)))
                continue
            if entry is None:
                if not key.startswith(CLAIM):  # a claim lapses; an answer does not
                    report.broken.append((key, "its value file is missing"))
            elif not key.startswith(INTERNAL_PREFIXES):
                problem = entry_problem(key, entry)
                if problem:
                    report.broken.append((key, problem))
        return report

    def export(self, path: str | Path) -> int:
        """Write every model call's entry as JSON Lines {"key", "entry"}; returns how many.
        Internal memos (file hashes, chat templates) stay: they describe this machine's files."""
        from ..io import write_jsonl

        return write_jsonl(path, ({"key": k, "entry": e} for k, e in self.entries()
                                  if not k.startswith(INTERNAL_PREFIXES)))

    def import_(self, path: str | Path, *, overwrite: bool = False) -> ImportReport:
        """Merge entries exported by `export`. Every line is checked first (nothing is imported
        from a file with a bad line); an entry whose key holds a different value here is a
        conflict, kept as it was and listed, unless `overwrite`."""
        from ..io import iter_jsonl

        rows = []
        for lineno, row in iter_jsonl(path):
            if not (isinstance(row, dict) and set(row) == {"key", "entry"}):
                raise BadInputError(f"{path}: line {lineno}: not a gasus cache export line")
            problem = entry_problem(row["key"], row["entry"])
            if problem:
                raise BadInputError(f"{path}: line {lineno}: {problem}")
            rows.append(row)
        report = ImportReport(read=len(rows))
        with self._store.transact():
            for row in rows:
                key, entry = row["key"], {"backend": "", "model": "", "created": 0.0, **row["entry"]}
                try:
                    old = self._store.get(key)
                except BrokenEntry:
                    old = {"value": None}  # unreadable here: a conflict like any other
                if old is None:
                    report.added += 1
                elif isinstance(old, dict) and old.get("value") == entry["value"]:  # else a conflict
                    report.unchanged += 1
                    continue
                elif overwrite:
                    report.replaced += 1
                else:
                    report.conflicts.append(key)
                    continue
                self._store.set(key, entry)
        return report

    def migrate(self) -> MigrateReport:
        """Convert the pickled entries of an older gasus to JSON, once: each is read by an
        unpickler that can build only plain data, and checked like an import. Memos are dropped
        (recomputed on use), anything else that is not a gasus entry is dropped and listed."""
        report = MigrateReport()
        disk = self._store.disk
        with self._store.transact():
            for key in list(self._store.iterkeys()):
                if isinstance(key, PickledKey):
                    report.broken.append(key.hex())
                    self._store.delete(key)
                    continue
                try:
                    current = self._store.get(key)
                    if current is None or key.startswith(INTERNAL_PREFIXES) or entry_problem(key, current) is None:
                        continue  # already JSON, and a gasus entry
                    entry = None  # JSON that gasus cannot read back (a field of the wrong type)
                except PickledValue as pickled:
                    try:
                        entry = disk.legacy_value(pickled)
                    except Exception:  # any failure to read the bytes as plain data
                        entry = None
                except BrokenEntry:
                    entry = None
                if key.startswith(INTERNAL_PREFIXES):
                    report.memos += 1
                    self._store.delete(key)
                elif entry is not None and entry_problem(key, entry) is None:
                    report.converted += 1
                    self._store.set(key, entry)
                else:
                    report.broken.append(key)
                    self._store.delete(key)
        write_marker(self.directory)
        return report

    def clear(self) -> int:
        n = len(self._store)
        self._store.clear()
        write_marker(self.directory)  # an emptied cache of an older gasus is a new one
        return n

    def close(self) -> None:
        self._store.close()
