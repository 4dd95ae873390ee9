"""FAISS indexes with SQLite metadata: build, update, delete, search, export, merge. Importing it is cheap."""

from mmtools.index.build import IndexSummary, gone_records, index_records, merge_parts, part_layout, safe_path
from mmtools.index.kinds import KINDS
from mmtools.index.store import (Hit, IndexInfo, IndexReader, IndexWriter, RecordRejected, metadata_path,
                                 models_match)

__all__ = ["KINDS", "Hit", "IndexInfo", "IndexReader", "IndexSummary", "IndexWriter", "RecordRejected",
           "gone_records", "index_records", "merge_parts", "metadata_path", "models_match", "part_layout",
           "safe_path"]
