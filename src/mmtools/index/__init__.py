"""FAISS indexes with SQLite metadata: build, update, delete, search. Importing this package is cheap."""

from mmtools.index.build import IndexSummary, index_records
from mmtools.index.kinds import KINDS
from mmtools.index.store import Hit, IndexInfo, IndexReader, IndexWriter, RecordRejected, metadata_path

__all__ = ["KINDS", "Hit", "IndexInfo", "IndexReader", "IndexSummary", "IndexWriter", "RecordRejected",
           "index_records", "metadata_path"]
