"""ocr: images in, records with the text written in them (``ocr_text``) out."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmtools.cli.common import OutputOption, command_session, require_input
from mmtools.cli.output import Column, OutputFormat, OutputFormatOption, emit_records, path_or_id


def ocr_command(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="Image files, folders (searched recursively), globs, JSONL files of records with a 'path', "
             "or - for JSONL on standard input (the default when input is piped).")] = None,
    output: OutputOption = None,
    languages: Annotated[str, typer.Option(
        "--lang", "-l", metavar="LANGS", help="Tesseract languages, joined by + (e.g. vie+eng).")] = "vie",
    boxes: Annotated[bool, typer.Option(
        "--boxes", help="Also write ocr_lines: each line's text, box [left, top, width, height] and "
                        "confidence.")] = False,
    jobs: Annotated[Optional[int], typer.Option(
        "--jobs", "-j", min=1, help="Images read at once (text is found in batches, then each image's lines "
                                    "are read by one of JOBS Tesseracts) [default: the CPU cores available].")] = None,
    root: Annotated[Optional[str], typer.Option(
        "--root", help="Give files ids and paths relative to this folder, as embed-images --root does.")] = None,
    hidden: Annotated[bool, typer.Option("--hidden", help="Include hidden files and folders.")] = False,
    max_pixels: Annotated[int, typer.Option(
        "--max-pixels", min=1, help="Refuse images larger than this many pixels (decompression bombs).")]
        = 100_000_000,
    fmt: OutputFormatOption = OutputFormat.auto,
) -> None:
    """Read the text in photos (signs, menus, screenshots): a scene-text detector finds each line, a neural
    reader reads its letters and Tesseract its Vietnamese accents; one record per image with ocr_text (lines joined by newlines, in reading order, Unicode NFC);
    other fields pass through.

    Needs Tesseract with its Vietnamese data (apt-get install tesseract-ocr tesseract-ocr-vie) and
    pip install 'mmtools[ocr]' (which brings the detector and the reader; without them Tesseract reads alone,
    with a warning).

    Example: mmtools ocr photos/ | mmtools embed-images | mmtools index -o idx.faiss
    """
    with command_session("ocr") as report:
        from mmtools.images import discover_images
        from mmtools.ocr import ocr_records, open_engine

        engine = open_engine(languages, on_warning=report.warning)
        sources = discover_images(require_input(inputs or [], "images"), root=root, hidden=hidden,
                                  on_problem=report.problem)
        bar = report.progress("reading text")
        try:
            emit_records(ocr_records(sources, engine, jobs=jobs, boxes=boxes, max_pixels=max_pixels,
                                     on_problem=report.problem, progress=bar),
                         fmt, columns=[Column("path", path_or_id, wrap=True), Column("text", "ocr_text", wrap=True)],
                         output=output)
        finally:
            bar.close()
