"""embed-images and embed-texts: inputs in, embedding records (JSONL) out."""

from __future__ import annotations

import time
from typing import Annotated, Any, Iterable, Iterator, Optional

import typer

from mmtools.cli.common import (DeviceOption, EmbeddingFormat, FormatOption, ModelOption,
                                RuntimeChoice, RuntimeOption, command_session, require_input)
from mmtools.cli.output import Column, OutputFormat, OutputFormatOption, emit_records, path_or_id, vector_cell

EmbedOutputOption = Annotated[Optional[str], typer.Option(
    "--output", "-o", metavar="PATH", help="Write JSONL here (atomically) instead of standard output. A name "
                                           "ending in .npy gets the vectors as one NumPy float32 array (rows in "
                                           "order) and the records without them, each with its row, in the "
                                           ".jsonl beside it: for large jobs; .parquet gets one Parquet file "
                                           "(id, path, embedding, record; needs pyarrow).")]
ShardOption = Annotated[Optional[str], typer.Option(
    "--shard", metavar="I/N", help="Embed only part I of N (I from 0), split by a stable hash of each input's id: "
                                   "N processes with --shard 0/N ... N-1/N together embed everything once.")]
BatchOption = Annotated[int, typer.Option("--batch-size", "-b", min=1, envvar="MMTOOLS_BATCH_SIZE",
                                          show_envvar=True, help="Inputs per forward pass.")]
ImageBatchOption = Annotated[Optional[int], typer.Option(
    "--batch-size", "-b", min=1, envvar="MMTOOLS_BATCH_SIZE", show_envvar=True,
    help="Images per forward pass [default: from free GPU memory on CUDA, 8 on a CPU, else 32].")]


class Counted:
    """Passes records through, counting them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, records: Iterable[Any]) -> Iterator[Any]:
        for record in records:
            self.count += 1
            yield record


VECTORS_HINT = ("the vectors are not shown on a terminal: pipe them (e.g. | mmtools index -o idx.faiss), write "
                "them with -o FILE, or see the records with --format jsonl")


def write_embeddings(records: Iterable[Any], fmt: OutputFormat, output: str | None, columns: list[Column],
                     report: Any) -> None:
    """JSONL records for pipes and files; on a terminal a table a person reads (no vectors) and a hint;
    ``-o FILE.npy``: the vectors as a NumPy array and the records beside it (FILE.jsonl); ``-o FILE.parquet``:
    one Parquet file (mmtools.vector_files)."""
    from mmtools.vector_files import is_vector_file

    if is_vector_file(output):
        from mmtools.errors import MmtoolsError
        from mmtools.vector_files import write_vector_file

        try:
            written = write_vector_file(records, output)
        except ValueError as exc:
            raise MmtoolsError(f"{output}: {exc}") from None
        report.info(f"{output}: {written}")
        return
    if emit_records(records, fmt, columns=columns, output=output) and fmt == OutputFormat.auto \
            and output in (None, "-") and _on_terminal():
        report.info(VECTORS_HINT)


def _on_terminal() -> bool:
    import sys

    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def summary(report: Any, embedded: int, started: float) -> None:
    """The closing line on stderr, terminal or not: how many were embedded and skipped, and how long it took."""
    report.info(f"{embedded} embedded, {report.problems} skipped, {time.monotonic() - started:.1f} s")


def embed_images_command(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="Image or video files, folders (searched recursively), globs, JSONL files of records with a "
             "'path' (keyframe records of `mmtools keyframes` also have a 'time': that frame of the video is "
             "embedded), or - for JSONL on standard input (the default when input is piped). A video given "
             "without times is cut into keyframes as `mmtools keyframes` does by default.")] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    runtime: RuntimeOption = RuntimeChoice.auto,
    int8: Annotated[bool, typer.Option(
        "--int8", help="Encode with the int8 image tower as a model of its own: its vectors carry a fingerprint "
                       "of their own and an index of them is searched only with the same int8 encoding. (Without "
                       "it, runtime auto or onnx already embeds with the int8 tower where the export measured it "
                       "within cosine 0.99 of fp32, under the model's fingerprint.)")] = False,
    output: EmbedOutputOption = None,
    embedding_format: FormatOption = EmbeddingFormat.base64,
    batch_size: ImageBatchOption = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1, help="Threads decoding images ahead of the model [default: for a GPU, the CPU count, "
                                 "at most 8; for a model on the CPU, one per four cores].")] = None,
    root: Annotated[Optional[str], typer.Option(
        "--root", help="Give files ids and paths relative to this folder (so an index can move with it), "
                       "and resolve relative 'path' fields of JSONL records against it [default: absolute "
                       "ids; paths as given].")] = None,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Encode every image, even those whose content this model encoded before "
                           "(the embedding cache lives in MMTOOLS_CACHE_DIR).")] = False,
    hidden: Annotated[bool, typer.Option(
        "--hidden", help="Include hidden files and folders (names starting with a dot) when walking "
                         "folders; macOS ._ files are always skipped.")] = False,
    max_pixels: Annotated[int, typer.Option(
        "--max-pixels", min=1, help="Refuse images larger than this many pixels (decompression bombs).")]
        = 100_000_000,
    shard: ShardOption = None,
    fmt: OutputFormatOption = OutputFormat.auto,
) -> None:
    """Embed images and video frames: one record per image or frame with its id, path and embedding.

    Video frames are decoded from their videos (no image files needed), the frames of one video in one pass.

    Example: mmtools embed-images photos/ | mmtools index -o idx.faiss
    """
    with command_session("embed-images") as report:
        from mmtools.embed import embed_images
        from mmtools.images import discover_images
        from mmtools.models import load_encoder
        from mmtools.shard import parse_shard, take_shard

        from mmtools.images import IMAGE_EXTENSIONS
        from mmtools.video import VIDEO_EXTENSIONS, frame_time
        from mmtools.video.sources import is_video_path, with_video_frames

        started = time.monotonic()
        named = require_input(inputs or [], "images")
        sources = discover_images(named, root=root, hidden=hidden,
                                  on_problem=report.problem, extensions=IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
        sources = take_shard(sources, parse_shard(shard) if shard else None, key=lambda source: source.id)
        bar = report.progress("embedding images")
        total = None
        if bar.enabled and "-" not in named:  # on a terminal: list the files first, for a total and an ETA
            sources = list(sources)
            if not any(is_video_path(s.path) and frame_time(s.record) is None for s in sources):
                total = len(sources)  # a video without times has as many items as keyframes, known later
        sources = with_video_frames(sources, on_problem=report.problem)
        def load(name: str | None, where: str | None):
            return load_encoder(name, where, runtime.value, int8_images=int8)

        if no_cache:
            encoder, cache = load(model, device), None
        else:
            from mmtools.embed_cache import cached_image_encoder

            encoder, cache = cached_image_encoder(model, device, load=load, variant="int8" if int8 else "")
        bar.set_total(total)
        embedded = Counted()
        try:
            write_embeddings(embedded(embed_images(sources, encoder, batch_size=batch_size, workers=workers,
                                                   max_pixels=max_pixels, vector_format=embedding_format.value,
                                                   cache=cache, on_problem=report.problem, progress=bar)),
                             fmt, output, [Column("path", path_or_id, wrap=True),
                                           Column("time", "time", justify="right", optional=True),
                                           Column("taken_at", "taken_at", optional=True),
                                           Column("embedding", vector_cell, justify="right")], report)
        finally:
            bar.close()
        summary(report, embedded.count, started)


def embed_texts_command(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="JSONL files (or plain text files with --lines); - or nothing reads standard input.")] = None,
    field: Annotated[str, typer.Option(
        "--field", "-f", help="The record field holding the text (a list of texts gives one record each).")]
        = "text",
    lines: Annotated[bool, typer.Option(
        "--lines", help="Inputs are plain text, one text per line, not JSONL.")] = False,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    runtime: RuntimeOption = RuntimeChoice.auto,
    output: EmbedOutputOption = None,
    embedding_format: FormatOption = EmbeddingFormat.base64,
    batch_size: BatchOption = 64,
    shard: ShardOption = None,
    fmt: OutputFormatOption = OutputFormat.auto,
) -> None:
    """Embed texts: one record per text with its id and embedding, other fields passed through.

    The model's text rules are applied first (Unicode NFC and tone marks; lower case and 64-token padding
    for SigLIP; word segmentation for PhoBERT-based models).

    Example: mmtools embed-texts --field caption captions.jsonl > caption-vectors.jsonl
    """
    with command_session("embed-texts") as report:
        started = time.monotonic()
        from mmtools.embed import embed_texts, text_items_from_lines, text_items_from_records
        from mmtools.records import read_records, read_text_lines

        sources = require_input(inputs or [], "texts")
        if lines:
            items = text_items_from_lines(read_text_lines(sources, report.problem), field)
        else:
            from mmtools.cli.segment import suggest_lines

            items = text_items_from_records(read_records(sources, suggest_lines(report.problem)), field,
                                            report.problem)
        from mmtools.shard import parse_shard, take_shard

        items = take_shard(items, parse_shard(shard) if shard else None, key=lambda item: item.id)
        from mmtools.serve import client

        from mmtools.cli.output import resolve_format
        from mmtools.vector_files import is_vector_file

        # the server has its own runtime, and writes JSONL: a terminal's table, .npy and .parquet are written here
        served = device == "auto" and runtime == RuntimeChoice.auto and \
            resolve_format(fmt, output) == OutputFormat.jsonl and not is_vector_file(output)
        written = client.RecordCount()
        if served and client.embed_texts(items, model=model, batch_size=batch_size, output=output,
                                         embedding_format=embedding_format.value, on_problem=report.problem,
                                         count=written):
            summary(report, written.records, started)  # a running `mmtools serve` did it, warm
            return
        from mmtools.models import load_encoder

        encoder = load_encoder(model, device, runtime.value)
        bar = report.progress("embedding texts")
        embedded = Counted()
        try:
            write_embeddings(embedded(embed_texts(items, encoder, batch_size=batch_size,
                                                  vector_format=embedding_format.value,
                                                  on_problem=report.problem, progress=bar)),
                             fmt, output, [Column("id", "id"), Column("text", field, wrap=True),
                                           Column("embedding", vector_cell, justify="right")], report)
        finally:
            bar.close()
        summary(report, embedded.count, started)
