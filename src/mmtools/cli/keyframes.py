"""keyframes: videos in, one JSONL record per keyframe out (shots found by a content detector)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmtools.cli.common import OutputOption, command_session, require_input
from mmtools.cli.output import Column, OutputFormat, OutputFormatOption, emit_records, path_or_id


def keyframes_command(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="Video files (mp4, mkv, webm, mov, avi: whatever FFmpeg reads), folders (searched recursively), "
             "globs, JSONL files of records with a 'path', or - for JSONL on standard input.")] = None,
    per_shot: Annotated[Optional[int], typer.Option(
        "--per-shot", min=1, metavar="N", help="Keyframes spread evenly over each shot [default: one per "
                                               "started 10 seconds, so one in the middle of a short shot].")]
        = None,
    every: Annotated[Optional[float], typer.Option(
        "--every", min=0.001, metavar="SECONDS", help="One keyframe every SECONDS instead (from 0), whatever "
                                                      "the shots; records still name their shot.")] = None,
    threshold: Annotated[float, typer.Option(
        "--threshold", min=0.0, help="How different (mean HSV difference, 0-255) a frame must be from the one "
                                     "before, and from the frames around it by half as much, to start a new "
                                     "shot: PySceneDetect's content threshold.")] = 27.0,
    cuts_only: Annotated[bool, typer.Option(
        "--cuts-only", help="Only hard cuts start shots; dissolves and fades through black are not looked "
                            "for (as before they were).")] = False,
    min_shot: Annotated[int, typer.Option(
        "--min-shot-frames", min=1, help="Shortest shot, in frames: a cut closer than this to the last one "
                                         "is ignored.")] = 15,
    frames_dir: Annotated[Optional[str], typer.Option(
        "--frames-dir", metavar="DIR", help="Also write each keyframe as a JPEG in DIR (named in "
                                            "'frame_path'); embed-images does not need them.")] = None,
    root: Annotated[Optional[str], typer.Option(
        "--root", help="Give videos ids and paths relative to this folder (so an index can move with it), "
                       "as embed-images --root does.")] = None,
    hidden: Annotated[bool, typer.Option(
        "--hidden", help="Include hidden files and folders when walking folders.")] = False,
    output: OutputOption = None,
    fmt: OutputFormatOption = OutputFormat.auto,
) -> None:
    """Find the shots of videos and pick keyframes: one record per keyframe with path, time, frame, shot,
    shot_start, shot_end, video_duration, fps and id (VIDEO#t=SECONDS).

    Shots change at hard cuts, and at dissolves and fades through black (the boundary at the transition's
    middle); keyframes are never blended or black frames. Camera motion and changes of light are no cut.

    Videos that cannot be read are named on stderr and skipped; a damaged or truncated one gives the
    keyframes before the damage. No image files are written unless --frames-dir is given: embed-images
    decodes each frame from its video.

    Example: mmtools keyframes videos/ | mmtools embed-images | mmtools index -o idx.faiss
    """
    with command_session("keyframes") as report:
        from mmtools.images import discover_images
        from mmtools.video import VIDEO_EXTENSIONS
        from mmtools.video.decode import require_av
        from mmtools.video.keyframes import KeyframeChoice, keyframe_records

        require_av()
        sources = discover_images(require_input(inputs or [], "videos"), root=root, hidden=hidden,
                                  on_problem=report.problem, extensions=VIDEO_EXTENSIONS)
        choice = KeyframeChoice(per_shot=per_shot, every=every, threshold=threshold, min_shot_frames=min_shot,
                                gradual=not cuts_only)
        emit_records(keyframe_records(sources, choice, frames_dir=frames_dir, on_problem=report.problem), fmt,
                     columns=[Column("shot", "shot", justify="right"), Column("time", _seconds, justify="right"),
                              Column("frame", "frame", justify="right"),
                              Column("frame file", "frame_path", wrap=True, optional=True)],
                     output=output, group_by=path_or_id)


def _seconds(record: dict) -> str:
    time = record.get("time")
    return f"{time:.2f} s" if isinstance(time, (int, float)) else ""
