"""Whether a Hugging Face hub name can be loaded at all, asked before the hub libraries are imported.

Offline (HF_HUB_OFFLINE) or with the hub out of reach, datasets and transformers take seconds to
import and, unreachable, retry for about 20 s, logging each try, before they fail. A name that is in
none of the local caches fails here at once, with one line; a cached one still loads offline.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

PROBE_TIMEOUT = 3.0  # seconds to open a connection to the hub before calling it unreachable
_TRUE = ("1", "on", "yes", "true")


def offline() -> str | None:
    """The variable by which the user told the hub libraries to stay offline, or None."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return name
    return None


def _hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "huggingface").expanduser()


def _cached(kind: str, name: str) -> bool:
    """Whether a hub repo ("datasets" or "models") has anything in the local caches the libraries read."""
    hub = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or _hf_home() / "hub")
    # a failed download leaves the repo's folder with refs and no snapshot: only a snapshot counts
    places = [hub.expanduser() / f"{kind}--{name.replace('/', '--')}" / "snapshots"]
    if kind == "datasets":
        datasets = Path(os.environ.get("HF_DATASETS_CACHE") or _hf_home() / "datasets").expanduser()
        places.append(datasets / name.replace("/", "___"))
    return any(place.is_dir() and any(place.iterdir()) for place in places)


@functools.lru_cache(maxsize=1)
def _reachable() -> bool:
    """Whether a connection to the hub (HF_ENDPOINT, else huggingface.co) opens within PROBE_TIMEOUT."""
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def unavailable(kind: str, name: str) -> str | None:
    """Why the hub repo `name` ("datasets" or "models") cannot be loaded, or None when it may be."""
    if _cached(kind, name):
        return None
    if offline() is not None:
        return f"{offline()} is set and it is not in the local Hugging Face cache"
    if not _reachable():
        return "the Hugging Face hub cannot be reached and it is not in the local Hugging Face cache"
    return None
