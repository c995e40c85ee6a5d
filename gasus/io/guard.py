"""The guard that no output destroys an input, and the umask outputs are written under."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import BadInputError, OutputConflictError
from .files import compression


def _overlap(a: Path, b: Path) -> bool:
    """Whether two paths name one file, or one lies inside the other (a directory), after following
    symlinks; or they are one inode (a hard link)."""
    real_a, real_b = Path(os.path.realpath(a)), Path(os.path.realpath(b))
    if real_a.is_relative_to(real_b) or real_b.is_relative_to(real_a):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet)
        return False


def check_outputs(outputs: Mapping[str, str | Path | None], inputs: Mapping[str, str | Path | None] | None = None,
                  *, protected_dir: str | Path | None = None) -> None:
    """Refuse, before anything is written, an output that would replace one of the inputs, that
    another output also names, that lies inside `protected_dir` (the cache), or whose suffix says
    compressed (gasus writes plain files).

    Keys are what the user called each path (an option or argument name); None values are skipped.
    """
    outs = [(label, Path(p)) for label, p in outputs.items() if p is not None]
    ins = [(label, Path(p)) for label, p in (inputs or {}).items() if p is not None]
    protected = Path(os.path.realpath(protected_dir)) if protected_dir is not None else None
    for i, (label, out) in enumerate(outs):
        kind = compression(out)
        if kind is not None:  # inputs are read by this suffix; an output under it would be plain text
            raise BadInputError(f"{out}: {label} names a {kind} file, but gasus writes uncompressed files; "
                                f"drop the {out.suffix} suffix (and compress the file afterwards)")
        for other_label, other in ins:
            if _overlap(out, other):
                raise OutputConflictError(f"{out}: {label} would overwrite the input {other_label} ({other}); "
                                          "choose another path")
        for other_label, other in outs[:i]:
            if _overlap(out, other):
                raise OutputConflictError(f"{out}: {label} and {other_label} ({other}) name the same file; "
                                          "give each output its own path")
        if protected is not None and Path(os.path.realpath(out)).is_relative_to(protected):
            raise OutputConflictError(f"{out}: {label} is inside the cache directory {protected_dir}; "
                                      "choose a file outside it")


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask would set it
    for a moment, under the feet of other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
