"""Full text in a Milvus collection: the columns each row keeps for the keyword channel, and the Milvus
expressions that search them (the FAISS index's full text is ``mmtools.index.fulltext``; both index the same
texts of a record, ``fulltext.texts_of``, and match a query the same way).

Each row keeps its record's texts twice, as an exact match compares them (NFC, lower case, accents kept)
and folded (no diacritics, ``đ`` as ``d``), each text as its syllables split by mmtools' own word boundaries
(``fulltext``'s), so that both backends agree on what a word is. Milvus's analyser indexes those columns for
``TEXT_MATCH`` and a BM25 function turns each into a sparse vector. The reader ranks rows by BM25 and checks
each candidate against its texts as FTS5 matches one text (every term, a quoted phrase's words in order, all
within one text), taking the snippet from the text that matched; when too few of the plain ranking's first
rows pass, it narrows to the rows that hold every word (one ``TEXT_MATCH`` a word: Milvus Lite has no phrase
match) and asks again.

What differs from FAISS: BM25 here scores a record's texts together (FTS5 scores each text on its own), so
the order within the exact and the folded group can differ; which records match does not.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from mmtools.index.fulltext import KeywordQuery, exact_words, folded_words, texts_of

EXACT = "text_exact"
FOLDED = "text_folded"
SPARSE = {EXACT: "text_exact_bm25", FOLDED: "text_folded_bm25"}
COUNT = "text_count"  # texts beyond the file name (whether the index holds texts worth a hybrid default)
MAX_TEXT_BYTES = 65_535  # Milvus's longest VARCHAR
ANALYZER = {"tokenizer": "standard", "filter": ["lowercase"]}
TEXT_BREAK = " \n "  # between a record's texts (the analyser drops it; the reader's check keeps texts apart)


def add_to_schema(schema: Any, index_params: Any) -> None:
    """The text columns, their BM25 functions and indexes, for a new collection."""
    from pymilvus import DataType, Function, FunctionType

    for column in (EXACT, FOLDED):
        schema.add_field(column, DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True,
                         enable_match=True, analyzer_params=ANALYZER)
        schema.add_field(SPARSE[column], DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name=f"{column}_bm25", function_type=FunctionType.BM25,
                                     input_field_names=[column], output_field_names=[SPARSE[column]]))
        index_params.add_index(field_name=SPARSE[column], index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    schema.add_field(COUNT, DataType.INT32)


def keeps_texts(field_names: Iterable[str]) -> bool:
    """Whether a collection with these fields has the text columns (collections from before do not)."""
    return {EXACT, FOLDED, COUNT} <= set(field_names)


def columns(record: dict[str, Any], extra_fields: Sequence[str]) -> dict[str, Any]:
    """The text columns of one row."""
    texts = texts_of(record, extra_fields)
    return {EXACT: _joined(" ".join(exact_words(text)) for _field, text in texts),
            FOLDED: _joined(" ".join(folded_words(text)) for _field, text in texts),
            COUNT: sum(1 for field, _text in texts if field != "file_name")}


def _joined(texts: Iterable[str]) -> str:
    joined = TEXT_BREAK.join(text for text in texts if text)
    encoded = joined.encode("utf-8")
    if len(encoded) <= MAX_TEXT_BYTES:
        return joined
    # Longer than a Milvus VARCHAR holds: the words past the limit are not searchable in this record.
    return encoded[:MAX_TEXT_BYTES].decode("utf-8", "ignore").rpartition(" ")[0]


def column_for(exact: bool) -> str:
    return EXACT if exact else FOLDED


def condition(query: KeywordQuery, exact: bool) -> str:
    """A filter keeping the rows that hold every word of ``query`` in the exact or folded column (words are
    letters and digits only, so they need no quoting)."""
    column = column_for(exact)
    words = dict.fromkeys(word for term in (query.exact if exact else query.folded) for word in term)
    return " and ".join(f'TEXT_MATCH({column}, "{word}")' for word in words)


def query_text(query: KeywordQuery, exact: bool) -> str:
    """What BM25 ranks the kept rows against."""
    return " ".join(word for term in (query.exact if exact else query.folded) for word in term)


def has_texts_condition(file_names: bool) -> str:
    return f'{EXACT} != ""' if file_names else f"{COUNT} > 0"
