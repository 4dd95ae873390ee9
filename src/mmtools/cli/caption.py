"""caption and ask: images in, records with a generated caption (or an answer to a question) out."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer

from mmtools.cli.common import DeviceOption, OutputOption, command_session, require_input

CaptionModelOption = Annotated[Optional[str], typer.Option(
    "--model", "-m", envvar="MMTOOLS_CAPTION_MODEL", show_envvar=True,
    help="Captioner: a `train captioner` run or model directory, a Hugging Face id (BLIP, GIT, "
         "VisionEncoderDecoder, or an image-text-to-text chat model needing no remote code), an imported "
         "name, or an alias (qwen2-vl-2b, qwen2.5-vl-3b, qwen2.5-vl-7b, smolvlm-256m, smolvlm-500m, blip-base, "
         "blip-large, git-base, vit-gpt2) [default: Qwen/Qwen2-VL-2B-Instruct].")]
InputsArgument = Annotated[Optional[list[str]], typer.Argument(
    help="Image or video files, folders (searched recursively), globs, JSONL files of records with a 'path' "
         "(keyframe records of `mmtools keyframes` also have a 'time': that frame is read), or - for JSONL "
         "on standard input (the default when input is piped).")]
MaxTokensOption = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Longest text generated, in "
                                                                              "tokens.")]
BeamsOption = Annotated[int, typer.Option("--num-beams", min=1, help="Beam search with this many beams "
                                                                     "(1: greedy).")]
BatchOption = Annotated[int, typer.Option("--batch-size", "-b", min=1, envvar="MMTOOLS_BATCH_SIZE",
                                          show_envvar=True, help="Images per generation pass.")]
RootOption = Annotated[Optional[str], typer.Option(
    "--root", help="Give files ids and paths relative to this folder, as embed-images --root does.")]
HiddenOption = Annotated[bool, typer.Option("--hidden", help="Include hidden files and folders.")]
PixelsOption = Annotated[int, typer.Option("--max-pixels", min=1, help="Refuse images larger than this many "
                                                                       "pixels (decompression bombs).")]


def caption_command(
    inputs: InputsArgument = None,
    model: CaptionModelOption = None,
    prompt: Annotated[Optional[str], typer.Option(
        "--prompt", "-p", help="What to ask a chat model (default: a one-sentence Vietnamese description), or "
                               "how a BLIP/GIT caption begins; VisionEncoderDecoder models read it before "
                               "their text.")] = None,
    field: Annotated[str, typer.Option("--field", "-f", help="The record field the caption is written to.")]
        = "caption",
    max_new_tokens: MaxTokensOption = 40,
    num_beams: BeamsOption = 1,
    batch_size: BatchOption = 8,
    device: DeviceOption = "auto",
    output: OutputOption = None,
    root: RootOption = None,
    hidden: HiddenOption = False,
    max_pixels: PixelsOption = 100_000_000,
) -> None:
    """Caption images and video frames: one record per image with a caption (Vietnamese by default); other
    fields pass through. Captions go into an index's keyword channel like ocr_text.

    Example: mmtools caption photos/ | mmtools embed-images | mmtools index -o idx.faiss
    """
    _generate("caption", inputs, model, device, output, root, hidden, max_pixels, field=field,
              prompt_of=lambda record: prompt, max_new_tokens=max_new_tokens, num_beams=num_beams,
              batch_size=batch_size, what="captioned")


def ask_command(
    inputs: InputsArgument = None,
    question: Annotated[Optional[str], typer.Option(
        "--question", help="The question asked of every image [default: each record's 'question' field].")]
        = None,
    model: CaptionModelOption = None,
    field: Annotated[str, typer.Option("--field", "-f", help="The record field the answer is written to.")]
        = "answer",
    max_new_tokens: MaxTokensOption = 20,
    num_beams: BeamsOption = 1,
    batch_size: BatchOption = 8,
    device: DeviceOption = "auto",
    output: OutputOption = None,
    root: RootOption = None,
    hidden: HiddenOption = False,
    max_pixels: PixelsOption = 100_000_000,
) -> None:
    """Answer a question about each image: one record per image (or per record of a JSONL with a 'question'
    field) with its answer; other fields pass through.

    Example: mmtools ask --question "Có bao nhiêu người trong ảnh?" photos/
    """
    from mmtools.caption.pipeline import question_of

    _generate("ask", inputs, model, device, output, root, hidden, max_pixels, field=field,
              prompt_of=question_of(question), max_new_tokens=max_new_tokens, num_beams=num_beams,
              batch_size=batch_size, what="answered")


def _generate(command: str, inputs: list[str] | None, model: str | None, device: str, output: str | None,
              root: str | None, hidden: bool, max_pixels: int, *, what: str, **options: Any) -> None:
    with command_session(command) as report:
        from mmtools.caption.loading import load_captioner
        from mmtools.caption.pipeline import generate_records
        from mmtools.cli.embed import Counted
        from mmtools.images import IMAGE_EXTENSIONS, discover_images
        from mmtools.records import RecordWriter, open_output
        from mmtools.video import VIDEO_EXTENSIONS, frame_time
        from mmtools.video.sources import is_video_path, with_video_frames

        started = time.monotonic()
        named = require_input(inputs or [], "images")
        sources = discover_images(named, root=root, hidden=hidden, on_problem=report.problem,
                                  extensions=IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
        bar = report.progress(f"{'captioning' if command == 'caption' else 'answering'} images")
        total = None
        if bar.enabled and "-" not in named:  # on a terminal: list the files first, for a total and an ETA
            sources = list(sources)
            if not any(is_video_path(s.path) and frame_time(s.record) is None for s in sources):
                total = len(sources)
        sources = with_video_frames(sources, on_problem=report.problem)
        generator = load_captioner(model, None if device == "auto" else device)
        bar.set_total(total)
        done = Counted()
        try:
            with open_output(output) as stream:
                writer = RecordWriter(stream, flush_each=output is None)
                writer.write_all(done(generate_records(sources, generator, on_problem=report.problem,
                                                       progress=bar, max_pixels=max_pixels, **options)))
        finally:
            bar.close()
        report.info(f"{done.count} {what}, {report.problems} skipped, {time.monotonic() - started:.1f} s")
