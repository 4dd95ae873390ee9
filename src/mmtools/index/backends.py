"""Where an index lives decides what opens it: the one seam between commands and index implementations.

* a plain path (``idx.faiss``): a FAISS index and its SQLite metadata (``mmtools.index.store``);
* ``milvus://HOST:PORT/COLLECTION``: a collection on a Milvus server or cluster (``mmtools.index.milvus``);
* ``milvus-lite://PATH.db/COLLECTION``: a collection in a Milvus Lite file (embedded, the same API).

Both implementations have the same reader, declared here as ``IndexBackend`` (a typing.Protocol: what search,
filters, the warm server and the int8 agreement check may use, and nothing else), and the same writer (``add``,
``remove``, ``has``, ``stored``, ``check``, ``commit``, ``abort``, ``info``, ``summary``); both are context
managers. Commands open indexes only through the functions here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Iterable, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mmtools.index.fulltext import KeywordHit
    from mmtools.index.info import Hit, IndexInfo

MILVUS_SCHEMES = ("milvus://", "milvus-lite://")


@runtime_checkable
class IndexBackend(Protocol):
    """An index opened for search (``IndexReader``, ``MilvusReader``).

    ``search``'s scores are similarities (cosine for a normalised index), best first; ``among`` takes rows that
    ``scan`` gave. ``root``: the folder a rooted index's relative paths start from (None: paths are absolute, or
known through absolute ids). ``hit_path`` is where a record's file is, absolute or relative to this process's folder (None
    when it cannot be known); ``sample_vectors`` gives up to ``count`` of the index's own vectors (None when it
    keeps none), for the int8 query tower's agreement check (mmtools.models.agreement)."""

    info: "IndexInfo"
    path: Any
    root: str | None  # a rooted index's root folder (where it is now): its records' paths are relative to it

    def search(self, vectors: Any, k: int = 10, min_score: float | None = None, *,
               among: Iterable[int] | None = None) -> "list[list[Hit]]": ...

    def has_texts(self, file_names: bool = False) -> bool: ...

    def texts_hint(self) -> str: ...

    def keyword_search(self, query: str, k: int, among: Collection[str] | None = None) -> "list[KeywordHit]": ...

    def stored_texts(self) -> Iterator[str]: ...

    def scan(self) -> Iterator[tuple[int, str, dict[str, Any]]]: ...

    def ids(self) -> Iterator[str]: ...

    def get(self, item_id: str) -> dict[str, Any] | None: ...

    def export(self, vector_format: str = "base64") -> Iterator[dict[str, Any]]: ...

    def hit_path(self, item_id: str, record: dict[str, Any]) -> str | None: ...

    def sample_vectors(self, count: int) -> Any: ...

    def close(self) -> None: ...

    def __enter__(self) -> "IndexBackend": ...

    def __exit__(self, *exc: object) -> None: ...

def is_milvus_location(location: object) -> bool:
    """Whether ``location`` names a Milvus collection; told apart by its scheme alone, so that every command's
    start-up does not import the Milvus implementation just to open a FAISS file."""
    return isinstance(location, str) and location.startswith(MILVUS_SCHEMES)


def open_reader(location: str | os.PathLike[str]) -> IndexBackend:
    """An index opened for search (``IndexReader`` or ``MilvusReader``)."""
    if is_milvus_location(location):
        from mmtools.index.milvus import MilvusReader

        return MilvusReader(str(location))
    from mmtools.index.store import IndexReader

    return IndexReader(location)


def open_writer(location: str | os.PathLike[str], **options: Any) -> Any:
    """An index opened for writing, with ``IndexWriter``'s keyword arguments (model, fingerprint, kind,
    params, rebuild, compact, lock_timeout, on_wait)."""
    if is_milvus_location(location):
        from mmtools.index.milvus import MilvusWriter

        return MilvusWriter(str(location), **options)
    from mmtools.index.store import IndexWriter

    return IndexWriter(location, **options)


def index_exists(location: str | os.PathLike[str]) -> bool:
    """Whether there is an index at ``location`` yet (a Milvus location asks the server)."""
    if not is_milvus_location(location):
        return Path(location).exists()
    from mmtools.errors import IndexFileError

    try:
        with open_reader(location):
            return True
    except IndexFileError:
        return False


def resolve_location(location: str | os.PathLike[str], cwd: str | None = None) -> str:
    """The same index named the same way from any folder: an absolute path, or the Milvus location (a
    Milvus Lite path made absolute against ``cwd`` or the current folder)."""
    if is_milvus_location(location):
        text = str(location)
        if cwd and text.startswith("milvus-lite://") and not text[len("milvus-lite://"):].startswith(("/", "~")):
            text = "milvus-lite://" + os.path.join(cwd, text[len("milvus-lite://"):])
        from mmtools.index.milvus import canonical_location

        return canonical_location(text)
    path = Path(location).expanduser()
    if cwd and not path.is_absolute():
        path = Path(cwd) / path
    return str(path.resolve())


def short_name(location: str | os.PathLike[str]) -> str:
    """What a server calls the index: a file's stem, a Milvus collection's name."""
    if is_milvus_location(location):
        from mmtools.index.milvus import parse_location

        return parse_location(str(location)).short_name
    return Path(location).stem


def signature(location: str | os.PathLike[str], reader: Any = None) -> tuple | None:
    """What changes when a write replaces the index, so that a warm reader knows to open it again. For
    Milvus, the open ``reader`` is asked (searches already see every write; info changes need a new one);
    None without one."""
    if is_milvus_location(location):
        return reader.signature() if reader is not None else None
    from mmtools.index.store import current_generation, metadata_path

    result: list = []
    for file in (location, metadata_path(location)):
        try:
            info = os.stat(file)
            result.append((info.st_ino, info.st_mtime_ns, info.st_size))
        except FileNotFoundError:
            result.append(None)
    # A segmented index commits inside SQLite's WAL (the files' stat may not change): its generation does.
    result.append(current_generation(location))
    return tuple(result)
