"""restore-accents: put the diacritics back into Vietnamese typed without them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmtools.cli.common import OutputOption, command_session, require_input


def restore_accents_command(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="JSONL files (or plain text files with --lines); - or nothing reads standard input.")] = None,
    field: Annotated[Optional[list[str]], typer.Option(
        "--field", "-f", help="Text field to restore (repeatable; a list of texts is restored item by item) "
                              "[default: text].")] = None,
    into: Annotated[Optional[str], typer.Option(
        "--into", help="Write the result to this field instead of in place; {field} stands for the source "
                       "field's name, e.g. '{field}_restored'.")] = None,
    lines: Annotated[bool, typer.Option(
        "--lines", help="Inputs are plain text, one text per line; output is the restored lines.")] = False,
    index: Annotated[Optional[str], typer.Option(
        "--index", "-i", metavar="IDX",
        help="Also learn from the texts stored in this index (captions, OCR text, tags...), so that the "
             "collection's own words win.")] = None,
    learn: Annotated[Optional[list[str]], typer.Option(
        "--learn", metavar="FILE",
        help="Also learn from this UTF-8 text file (repeatable): your own words and phrases, one sentence or "
             "phrase a line. To learn from a file every time, put it in ~/.local/share/mmtools/accents/ "
             "($MMTOOLS_HOME/accents/).")] = None,
    alternatives: Annotated[int, typer.Option(
        "--alternatives", "-n", min=1, metavar="N",
        help="With --lines: print up to N restorations of each line where the likeliest are close, as JSONL "
             "{\"text\", \"alternatives\": [[text, weight], ...]}.")] = 1,
    output: OutputOption = None,
) -> None:
    """Put the accents back into Vietnamese typed without them: "xe hoi mau do" becomes "xe hơi màu đỏ".

    A syllable trigram model, decoded with Viterbi over each syllable's accented forms, learnt from
    Vietnamese that ships offline (wordfreq's frequencies, underthesea's 74,000-word lexicon and news
    sentences, a hand-written list of photo descriptions), your own text files (--learn), and an index's
    own texts with --index. It is compiled once into mmtools' cache. Text that already has accents, words
    the model never saw accented (English, names) and digits are left as they are; so are the other fields.

    Example: echo "xe hoi mau do" | mmtools restore-accents --lines
    """
    with command_session("restore-accents") as report:
        from mmtools.records import RecordWriter, open_output, read_records, read_text_lines
        from mmtools.text.fields import transform_fields
        from mmtools.text.restore import load_restorer

        restorer = load_restorer(index, learn=learn or ())
        sources = require_input(inputs or [], "texts")
        with open_output(output) as stream:
            if lines:
                for _where, text in read_text_lines(sources, report.problem):
                    if alternatives > 1:
                        import orjson

                        stream.write(orjson.dumps({"text": text, "alternatives": restorer.alternatives(
                            text, alternatives)}) + b"\n")
                    else:
                        stream.write(restorer.restore(text).encode("utf-8") + b"\n")
                return
            RecordWriter(stream).write_all(transform_fields(
                read_records(sources, report.problem), restorer.restore_many, field or ["text"],
                into=into or "{field}", on_problem=report.problem))
