"""transcribe: videos and audio files in, one JSONL record per spoken segment out (Whisper through transformers)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmtools.cli.common import DeviceOption, OutputOption, command_session, require_input


def transcribe_command(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="Videos and audio files (whatever FFmpeg reads), folders (searched recursively), globs, JSONL "
             "files of records with a 'path' (keyframe records too: each file once), or - for JSONL on "
             "standard input.")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", envvar="MMTOOLS_ASR_MODEL", show_envvar=True,
        help="Speech model (Whisper family): a Hugging Face id, a local directory, or an alias: whisper-turbo, "
             "whisper-large, whisper-small, whisper-base, whisper-tiny, phowhisper-small, phowhisper-medium, "
             "phowhisper-large [default: openai/whisper-large-v3-turbo].")] = None,
    language: Annotated[Optional[str], typer.Option(
        "--language", "-l", metavar="CODE", help="The language spoken (vi, en, ...) [default: detected in "
                                                 "each file's first 30 seconds].")] = None,
    device: DeviceOption = "auto",
    batch_size: Annotated[int, typer.Option(
        "--batch-size", "-b", min=1, envvar="MMTOOLS_BATCH_SIZE", show_envvar=True,
        help="Files (and 30-second chunks of long files) per forward pass.")] = 8,
    root: Annotated[Optional[str], typer.Option(
        "--root", help="Give files ids and paths relative to this folder, as keyframes --root does (use the "
                       "same, so segments and keyframes name their video alike).")] = None,
    hidden: Annotated[bool, typer.Option(
        "--hidden", help="Include hidden files and folders when walking folders.")] = False,
    output: OutputOption = None,
) -> None:
    """Transcribe what is said in videos and audio files: one record per spoken segment with path, start,
    end, text, language, time (= start) and id (VIDEO#t=START,END).

    Segments are moments of their video: embedded with embed-texts and indexed beside the keyframes, a
    keyword or hybrid search finds what was said, and a hit plays the video from the segment's start (web
    page, --html), and --then mixes spoken and visual steps. Files with no readable sound are named on
    stderr and skipped.

    Example: mmtools transcribe videos/ | mmtools embed-texts | mmtools index -o idx.faiss
    """
    with command_session("transcribe") as report:
        from mmtools.audio import AUDIO_EXTENSIONS
        from mmtools.audio.transcribe import Transcriber, speech_records
        from mmtools.images import discover_images
        from mmtools.records import RecordWriter, open_output
        from mmtools.video import VIDEO_EXTENSIONS
        from mmtools.video.decode import require_av

        require_av()
        sources = discover_images(require_input(inputs or [], "videos or audio files"), root=root,
                                  hidden=hidden, on_problem=report.problem,
                                  extensions=VIDEO_EXTENSIONS | AUDIO_EXTENSIONS)
        transcriber = Transcriber(model, device, batch_size=batch_size)
        with open_output(output) as stream:
            RecordWriter(stream, flush_each=output is None).write_all(
                speech_records(sources, transcriber, language=language, on_problem=report.problem))
