"""Milvus collections behind the reader and writer interface of the FAISS index (``mmtools.index.store``).

Modules: ``location`` (the two location forms, expressions), ``connection`` (clients, Milvus Lite's
one-process file, errors in words), ``collection`` (what a collection is: schema, info property, rows),
``texts`` (the keyword channel's columns), ``reader`` and ``writer``.

Locations: ``milvus://HOST:PORT/COLLECTION`` (a Milvus server or cluster; credentials, if any, come from
``MMTOOLS_MILVUS_TOKEN``: ``user:password`` or an API key) and ``milvus-lite://PATH.db/COLLECTION`` (Milvus
Lite: embedded, a local folder, the same API).

A collection holds one row a record: ``id`` (the primary key), ``vector`` (the unit vector), ``record`` (the
stored fields, JSON), ``digest`` (of both, so that a re-run leaves unchanged records alone) and the record's
texts for the keyword channel (``texts``: analysed text, BM25 sparse vectors). What the FAISS index
keeps in its metadata (model name and fingerprint, dimension, kind, parameters...) is the collection's
``mmtools_info`` property. The name users give is an *alias*: the collection behind it is ``NAME__xxxxxxxx``,
so that ``--rebuild`` fills a new collection and switches the alias once it is complete (the old one stays
searchable until then), and a new collection only appears once it holds everything.

Writes: records are spooled to a private temporary SQLite file while the input is read (nothing reaches
Milvus before the whole stream was read, as with FAISS), then upserted by id at ``commit``. Milvus has no
transactions: a commit that is killed halfway leaves some records upserted and others not, each whole and
from the right model; running the same write again completes it. Many processes may write into one
collection of a Milvus server at once (upserts by id; the last write of an id wins). Milvus Lite serves one
process at a time: a second one waits for the file like a second FAISS writer waits for the lock.

Filters: ``search(..., where=...)`` takes a Milvus boolean expression over the stored fields, which live in
the JSON field ``record`` (``record["tags"]``; see ``field_expression``), or an object with a ``to_milvus()``
method that returns one.
"""

from mmtools.index.backends import is_milvus_location  # noqa: F401 (one definition; re-exported)
from mmtools.index.milvus.location import (LITE_SCHEME, SERVER_SCHEME, MilvusLocation,  # noqa: F401
                                           canonical_location, field_expression, parse_location, string_literal)
from mmtools.index.milvus.reader import MilvusReader  # noqa: F401
from mmtools.index.milvus.writer import MilvusWriter  # noqa: F401
