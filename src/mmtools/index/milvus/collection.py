"""What an mmtools collection is: its schema (vector, record, digest and the text columns), the ``mmtools_info``
property holding what a FAISS index keeps in its metadata, and reading its rows."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator, NamedTuple

from mmtools.errors import IndexFileError
from mmtools.index.info import FORMAT_VERSION, IndexInfo
from mmtools.index.milvus import texts as milvus_texts
from mmtools.index.milvus.connection import talking_to
from mmtools.index.milvus.location import MilvusLocation

INFO_PROPERTY = "mmtools_info"
INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT"}  # ivfpq: Milvus Lite has no IVF_PQ to test on
METRIC = "IP"  # on unit vectors: the FAISS index's inner product, scores and order alike
MAX_ID_BYTES = 65_535  # Milvus's longest VARCHAR
FULL_TEXT_SINCE = (2, 5)  # the first Milvus (and Milvus Lite) with BM25 functions and TEXT_MATCH


class Described(NamedTuple):
    physical: str  # the collection behind the alias
    info: IndexInfo
    keeps_texts: bool  # has the full-text columns (collections from before the keyword channel do not)


def describe(client: Any, where: MilvusLocation) -> Described | None:
    """The collection behind the alias and its mmtools info, or None when there is none."""
    with talking_to(where, "looking up the collection"):
        if not client.has_collection(where.collection):
            return None
        described = client.describe_collection(where.collection)
    physical = described.get("collection_name", where.collection)
    text = (described.get("properties") or {}).get(INFO_PROPERTY)
    if text is None:
        raise IndexFileError(f"Milvus collection {where.text} was not made by mmtools (it has no "
                             f"{INFO_PROPERTY} property)", hint="name another collection")
    try:
        values = json.loads(text)
    except ValueError:
        raise IndexFileError(f"Milvus collection {where.text} holds unreadable mmtools info",
                             hint="rebuild it with mmtools index --rebuild") from None
    version = values.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise IndexFileError(f"Milvus collection {where.text} was written by a newer mmtools (format {version}; "
                             f"this mmtools reads up to {FORMAT_VERSION})", hint="upgrade mmtools")
    info = IndexInfo(**{k: v for k, v in values.items() if k in IndexInfo.__dataclass_fields__})
    fields = [field.get("name") for field in described.get("fields") or []]
    return Described(physical, info, milvus_texts.keeps_texts(fields))


def full_text_version(client: Any, where: MilvusLocation) -> str | None:
    """None when the Milvus behind the client can keep full text (BM25 functions and TEXT_MATCH came with
    Milvus 2.5), else its version, to say why keyword search is off."""
    with talking_to(where, "asking the server's version"):
        version = str(client.get_server_version())
    found = re.search(r"(\d+)\.(\d+)", version)
    if found is None or (int(found.group(1)), int(found.group(2))) >= FULL_TEXT_SINCE:
        return None  # unknown: try
    return version


def info_property(info: IndexInfo) -> dict[str, str]:
    kept = {k: v for k, v in info.__dict__.items() if k not in ("count", "ntotal", "next_row", "faiss_bytes")}
    return {INFO_PROPERTY: json.dumps(kept)}


def count_records(client: Any, where: MilvusLocation, physical: str) -> int:
    with talking_to(where, "counting records"):
        rows = client.query(physical, filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"]) if rows else 0


def load_collection(client: Any, where: MilvusLocation, physical: str) -> None:
    with talking_to(where, "loading the collection"):
        client.load_collection(physical)  # Milvus Lite releases collections when the file is closed


def _index_params(info: IndexInfo) -> dict[str, int]:
    params = info.params
    if info.kind == "hnsw":
        return {"M": params["m"], "efConstruction": params["ef_construction"]}
    if info.kind == "ivf":
        return {"nlist": params["nlist"]}
    return {}


def search_params(info: IndexInfo, k: int) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if info.kind == "hnsw":
        params["ef"] = max(info.params["ef_search"], k)
    elif info.kind == "ivf":
        params["nprobe"] = info.params["nprobe"]
    return {"metric_type": METRIC, "params": params}


def iterate_rows(client: Any, where: MilvusLocation, physical: str, fields: list[str]) -> Iterator[dict[str, Any]]:
    with talking_to(where, "reading the collection"):
        iterator = client.query_iterator(physical, batch_size=1000, filter="", output_fields=fields)
    try:
        while True:
            with talking_to(where, "reading the collection"):
                batch = iterator.next()
            if not batch:
                return
            yield from batch
    finally:
        iterator.close()



def create_collection(client: Any, where: MilvusLocation, physical: str, info: IndexInfo, texts: bool) -> None:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=info.dim)
    schema.add_field("record", DataType.JSON)
    schema.add_field("digest", DataType.VARCHAR, max_length=32)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type=INDEX_TYPES[info.kind], metric_type=METRIC,
                    params=_index_params(info))
    if texts:
        milvus_texts.add_to_schema(schema, index)
    with talking_to(where, "creating the collection"):
        # Strong consistency: a search right after a write sees it, as with the FAISS index.
        client.create_collection(physical, schema=schema, index_params=index, consistency_level="Strong",
                                 properties=info_property(info))
