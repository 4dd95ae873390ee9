"""segment: Vietnamese word segmentation and normalisation of text fields."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from mmtools.cli.common import OutputOption, command_session, require_input
from mmtools.errors import UsageError


class Backend(str, Enum):
    underthesea = "underthesea"
    vncorenlp = "vncorenlp"
    pyvi = "pyvi"


class ToneStyle(str, Enum):
    old = "old"
    new = "new"


def segment_command(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="JSONL files (or plain text files with --lines); - or nothing reads standard input.")] = None,
    field: Annotated[Optional[list[str]], typer.Option(
        "--field", "-f", help="Text field to segment (repeatable) [default: text].")] = None,
    into: Annotated[Optional[str], typer.Option(
        "--into", help="Write the result to this field instead of in place; {field} stands for the source "
                       "field's name, e.g. '{field}_seg'.")] = None,
    lines: Annotated[bool, typer.Option(
        "--lines", help="Inputs are plain text, one text per line; each becomes a record {id, text}.")] = False,
    backend: Annotated[Backend, typer.Option(
        "--backend", help="Segmenter: underthesea (offline, bundled model), vncorenlp (needs Java and a "
                          "VnCoreNLP download), or pyvi (pip install pyvi).")] = Backend.underthesea,
    vncorenlp_dir: Annotated[Optional[str], typer.Option(
        "--vncorenlp-dir", envvar="MMTOOLS_VNCORENLP_DIR", show_envvar=True,
        help="Folder holding VnCoreNLP-1.2.jar and models/wordsegmenter (for --backend vncorenlp).")] = None,
    dictionary: Annotated[Optional[str], typer.Option(
        "--dict", help="File of words to always join, one multi-syllable word per line ('điều hòa').")] = None,
    normalize_only: Annotated[bool, typer.Option(
        "--normalize-only", help="Only normalise (NFC, tone marks, spacing); do not segment.")] = False,
    tone_style: Annotated[ToneStyle, typer.Option(
        "--tone-style", help="Tone-mark placement: old (hòa, thủy: the common form) or new (hoà, thuỷ).")]
        = ToneStyle.old,
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Also lower-case the text.")] = False,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", min=0, envvar="MMTOOLS_JOBS", show_envvar=True,
        help="Worker processes for segmenting: 0 is one per CPU (used only for inputs large enough to gain); "
             "1 stays in this process.")] = 0,
    max_chars: Annotated[int, typer.Option(
        "--max-chars", min=1, help="Texts longer than this are passed through unchanged, with a message.")]
        = 1_000_000,
    output: OutputOption = None,
) -> None:
    """Word-segment Vietnamese text fields the way PhoBERT expects: syllables of one word joined by "_".

    Text is normalised first: Unicode NFC, one tone-mark placement, tidy spacing. Every other field passes
    through.

    Example: echo '{"text": "Một chiếc xe hơi màu đỏ"}' | mmtools segment
    """
    with command_session("segment") as report:
        from mmtools.embed import text_items_from_lines
        from mmtools.records import RecordWriter, open_output, read_records, read_text_lines
        from mmtools.text.fields import transform_fields

        fields = field or ["text"]
        target = into or "{field}"
        if len(fields) > 1 and into and "{field}" not in into:
            raise UsageError(f"--into {into!r} would write several fields into one",
                             hint="include {field} in it, e.g. --into '{field}_seg'")
        transform = _make_transform(backend.value, vncorenlp_dir, dictionary, normalize_only,
                                    tone_style.value, lowercase, jobs)
        sources = require_input(inputs or [], "texts")
        if lines:
            records = ({"id": item.id, "text": item.text}
                       for item in text_items_from_lines(read_text_lines(sources, report.problem)))
        else:
            records = read_records(sources, suggest_lines(report.problem))
        with open_output(output) as stream:
            writer = RecordWriter(stream, flush_each=False)
            writer.write_all(transform_fields(records, transform, fields, into=target, max_chars=max_chars,
                                              on_problem=report.problem))


def suggest_lines(on_problem):
    """``on_problem`` for reading JSONL where --lines reads plain text: the first line that is not JSON says
    so (plain text given without --lines reads as one bad line after another)."""
    from mmtools.errors import Problem

    told = [False]

    def handle(problem: Problem) -> None:
        if not told[0] and problem.reason.startswith("not valid JSON"):
            told[0] = True
            problem = Problem(problem.source, f"{problem.reason}; plain text, one text per line? give --lines")
        on_problem(problem)

    return handle


def _make_transform(backend: str, vncorenlp_dir: str | None, dictionary_path: str | None,
                    normalize_only: bool, tone_style: str, lowercase: bool, jobs: int):
    from mmtools.text import get_segmenter, load_dictionary, normalize_text

    if normalize_only:
        return lambda texts: [normalize_text(t, tone_style=tone_style, lowercase=lowercase) for t in texts]
    words = load_dictionary(dictionary_path) if dictionary_path else None
    segmenter = get_segmenter(backend, dictionary=words, vncorenlp_dir=vncorenlp_dir, tone_style=tone_style)

    def segment(texts: list[str]) -> list[str]:
        if lowercase:
            texts = [t.lower() for t in texts]
        return segmenter.segment_many(texts, jobs=jobs)

    return segment
