"""Reading datasets in the layouts people keep them in, and writing files atomically.

`files` says what a file is and reads its bytes; `fastjson` reads JSON fast and exactly;
`read` turns datasets of every layout into examples; `guard` refuses an output that would
destroy an input; `write` writes atomically. Each imports only the ones listed before it.
Tunables (JSONL_BLOCK, ARRAY_BLOCK) are set on the module that reads them, not here.
"""

from .fastjson import (
    in_bulk,
    iter_jsonl,
    iter_jsonl_objects,
    loads_json,
    read_json,
    read_jsonl_objects,
)
from .files import (
    COMPRESSIONS,
    DEFAULT_MAX_EXPANSION,
    compression,
    file_kind,
    max_expansion,
    set_max_expansion,
    sha256_file,
)
from .guard import check_outputs, current_umask
from .read import (
    DEFAULT_MAX_ROWS,
    FORMATS,
    FieldMap,
    chat_triplet,
    count_lines,
    count_rows,
    load_examples,
    looks_like_hub_name,
    read_rows,
)
from .write import (
    atomic_write,
    make_dirs_for,
    write_json,
    write_json_array,
    write_jsonl,
    write_records,
)

__all__ = [
    "COMPRESSIONS", "DEFAULT_MAX_EXPANSION", "DEFAULT_MAX_ROWS", "FORMATS", "FieldMap", "atomic_write",
    "chat_triplet", "check_outputs", "compression", "count_lines", "count_rows", "current_umask", "file_kind",
    "in_bulk", "iter_jsonl", "iter_jsonl_objects", "load_examples", "loads_json", "looks_like_hub_name",
    "make_dirs_for", "max_expansion", "read_json", "read_jsonl_objects", "read_rows", "set_max_expansion", "sha256_file",
    "write_json", "write_json_array", "write_jsonl", "write_records",
]
