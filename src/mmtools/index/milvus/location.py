"""Where a collection is: ``milvus://HOST[:PORT]/COLLECTION`` or ``milvus-lite://PATH.db/COLLECTION``, and the
Milvus expressions that name stored fields and ids."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable

from mmtools.errors import IndexFileError

SERVER_SCHEME = "milvus://"
LITE_SCHEME = "milvus-lite://"
DEFAULT_PORT = 19530
TOKEN_VARIABLE = "MMTOOLS_MILVUS_TOKEN"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")


@dataclass(frozen=True)
class MilvusLocation:
    text: str  # as the user wrote it, for messages
    uri: str  # http://HOST:PORT, or the absolute path of the Milvus Lite folder
    collection: str  # the alias users name
    lite: bool

    @property
    def short_name(self) -> str:
        return self.collection



def parse_location(location: str) -> MilvusLocation:
    """``milvus://HOST[:PORT]/COLLECTION`` or ``milvus-lite://PATH.db/COLLECTION``; IndexFileError otherwise."""
    if location.startswith(LITE_SCHEME):
        folder, _, collection = location[len(LITE_SCHEME):].rpartition("/")
        if not folder.endswith(".db"):
            raise IndexFileError(f"{location} does not name a Milvus Lite file", hint="write milvus-lite://PATH.db/"
                                 "COLLECTION, e.g. milvus-lite://photos.db/photos")
        uri = os.path.abspath(os.path.expanduser(folder))
        lite = True
    elif location.startswith(SERVER_SCHEME):
        from urllib.parse import urlsplit

        parts = urlsplit("http://" + location[len(SERVER_SCHEME):])
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            port = None
        collection = parts.path.strip("/")
        if not parts.hostname or port is None or parts.query or parts.username:
            raise IndexFileError(f"{location} is not a Milvus address", hint="write milvus://HOST:PORT/COLLECTION "
                                 f"(credentials go in {TOKEN_VARIABLE})")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        uri = f"http://{host}:{port}"
        lite = False
    else:
        raise IndexFileError(f"{location} is not a Milvus location",
                             hint="write milvus://HOST:PORT/COLLECTION or milvus-lite://PATH.db/COLLECTION")
    if not _NAME.match(collection):
        raise IndexFileError(f"{location}: {collection!r} is not a Milvus collection name",
                             hint="a name is letters, digits and underscores, not starting with a digit")
    return MilvusLocation(location, uri, collection, lite)


def canonical_location(location: str) -> str:
    """The location with a Milvus Lite path made absolute (the same collection from any folder)."""
    where = parse_location(location)
    return f"{LITE_SCHEME}{where.uri}/{where.collection}" if where.lite else where.text


def field_expression(name: str) -> str:
    """The Milvus expression for a stored field (they live in the JSON field ``record``)."""
    return f"record[{string_literal(name)}]"


def string_literal(text: str) -> str:
    """A Milvus expression string literal (Milvus reads backslash escapes, and no raw line breaks)."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
               .replace("\t", "\\t"))
    return f'"{escaped}"'


def ids_expression(ids: Iterable[str]) -> str:
    return f"id in [{', '.join(string_literal(item_id) for item_id in ids)}]"
