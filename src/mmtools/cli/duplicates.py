"""duplicates: groups of near-identical photos in an index."""

from __future__ import annotations

from typing import Annotated

import typer

from mmtools.cli.common import IndexOption, OutputOption, command_session
from mmtools.cli.output import Column, OutputFormat, OutputFormatOption, Print0Option, emit_records


def duplicates_command(
    index: IndexOption,
    threshold: Annotated[float, typer.Option(
        "--threshold", "-t", min=-1.0, max=1.0,
        help="Cosine similarity from which two photos' vectors make them candidates; the perceptual hashes "
             "then decide. Lower finds copies a weaker model sees as less alike, at the cost of more "
             "hashing.")] = 0.80,  # mmtools.duplicates.DEFAULT_THRESHOLD (a test keeps them equal)
    fmt: OutputFormatOption = OutputFormat.auto,
    print0: Print0Option = False,
    output: OutputOption = None,
) -> None:
    """Find near-identical photos (resized, re-compressed or lightly cropped copies) in an index: one JSONL
    record per group, {"members": [stored records], "score": lowest similarity, "score_mean": ...}.

    Candidates are pairs whose vectors are within --threshold (FAISS range search); each pair is confirmed
    by perceptual hashes of the files (aligned for crops), so different shots of one scene do not group.
    --format paths prints one group per line, its paths separated by tabs. A file that cannot be read is
    named on stderr and left out (exit status 1). Needs pip install 'mmtools[duplicates]'.

    Example: mmtools duplicates -i idx.faiss --format paths | cut -f2- | tr '\\t' '\\n' | xargs echo rm
    """
    with command_session("duplicates") as report:
        from mmtools.duplicates import find_duplicates, group_paths
        from mmtools.index.backends import open_reader

        with open_reader(index) as reader:
            bar = report.progress("pairs checked")
            try:
                groups = find_duplicates(reader, threshold=threshold, on_problem=report.problem, progress=bar)
                if fmt == OutputFormat.paths:  # one line per group: its paths, tab-separated
                    groups = ({"path": "\t".join(group_paths(group))} for group in groups)
                emit_records(groups, fmt, output=output, print0=print0, columns=[
                    Column("size", lambda g: len(g["members"]), justify="right"),
                    Column("score", "score", justify="right"),
                    Column("photos", lambda g: "\n".join(group_paths(g)), wrap=True)])
            finally:
                bar.close()
