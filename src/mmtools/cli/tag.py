"""tag: zero-shot tags from a label list with a retrieval model, or tags from a trained tagger."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmtools.cli.common import (DeviceOption, ModelOption, OutputOption, RuntimeChoice, RuntimeOption,
                                command_session, require_input)
from mmtools.cli.output import Column, OutputFormat, OutputFormatOption, Print0Option, emit_records, path_or_id

# What a tagged record shows in a table: where it came from, and its tags.
TAG_COLUMNS = [
    Column("record", path_or_id, wrap=True),
    Column("tags", "tags", wrap=True),
]


def tag_command(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="JSONL files of records (a 'path' to an image, a text field, or an 'embedding' from "
             "embed-images / embed-texts), image files, folders or globs; - or nothing reads standard input.")]
        = None,
    labels: Annotated[Optional[str], typer.Option(
        "--labels", "-l", help="Zero-shot: a file with one label per line, in any language (normalised; "
                               "duplicates merged).")] = None,
    model: ModelOption = None,
    template: Annotated[Optional[list[str]], typer.Option(
        "--template", help="Zero-shot prompt template with {} for the label (repeatable; replaces the default "
                           "Vietnamese and English ensemble, e.g. 'một bức ảnh về {}').")] = None,
    top_k: Annotated[Optional[int], typer.Option(
        "--top-k", "-k", min=1, help="At most this many tags per record [default: 5 zero-shot; all above "
                                     "the thresholds for a trained tagger].")] = None,
    threshold: Annotated[Optional[float], typer.Option(
        "--threshold", min=0.0, max=1.0, help="Keep tags scoring at least this [default: none zero-shot; the "
                                              "tuned per-label thresholds of a trained tagger].")] = None,
    thresholds: Annotated[Optional[str], typer.Option(
        "--thresholds", help="Per-label thresholds: a JSON object {\"label\": 0.3} or lines 'label<TAB>0.3'; "
                             "they override --threshold for those labels.")] = None,
    field: Annotated[Optional[list[str]], typer.Option(
        "--field", "-f", help="Text field(s) of the records (repeatable; several are joined) [default: text].")]
        = None,
    root: Annotated[Optional[str], typer.Option(
        "--root", help="Resolve relative 'path' fields against this folder [default: the current directory].")]
        = None,
    device: DeviceOption = "auto",
    runtime: RuntimeOption = RuntimeChoice.auto,
    output: OutputOption = None,
    output_format: OutputFormatOption = OutputFormat.auto,
    print0: Print0Option = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, envvar="MMTOOLS_BATCH_SIZE",
                                            show_envvar=True, help="Inputs per forward pass.")] = 32,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Zero-shot: compute the label vectors again instead of reading them from the cache.")]
        = False,
) -> None:
    """Tag records: each comes out with "tags": [{"label", "score"}, ...], best first (a table on a terminal).

    Zero-shot (--labels FILE, any retrieval model): SigLIP scores are the model's sigmoid probabilities;
    CLIP scores a softmax over the labels; text records a softmax too. A trained tagger (--model DIR
    from `mmtools train tagger`) reads text, images or both, as it was trained. A record with an embedding
    is scored from it without re-encoding, and only by the model that made it.

    Examples: mmtools tag --labels labels.txt photos/ ; mmtools embed-images photos/ | mmtools tag -l labels.txt ;
    mmtools tag --model rooms-tagger listings.jsonl
    """
    with command_session("tag") as report:
        from mmtools.cli.fast import tag_request
        from mmtools.tag.inputs import records_from_inputs
        from mmtools.tag.labels import Thresholds, read_thresholds

        sources = require_input(inputs or [], "inputs")
        fields = field or ["text"]
        # Light checks first (no torch): a warm server may do the work.
        trained, label_list, per_label = tag_request(model, labels, template, thresholds, fields)
        if device == "auto" and _jsonl_out(output_format, output, print0):
            from mmtools.serve import client

            if client.tag(sources, model=model, labels=label_list, templates=template, top_k=top_k,
                          threshold=threshold, thresholds=per_label, fields=fields, root=root,
                          batch_size=batch_size, use_cache=not no_cache, output=output,
                          on_problem=report.problem):
                return
        if trained:
            from mmtools.tag.trained import load_tagger, tag_records

            tagger = load_tagger(model, device, runtime.value)
            per_label = read_thresholds(thresholds, tagger.labels) if thresholds else None
            tagged = tag_records(records_from_inputs(sources, report.problem), tagger,
                                 threshold=threshold, per_label=per_label, top_k=top_k,
                                 text_fields=fields, root=root, batch_size=batch_size, on_problem=report.problem)
        else:
            from mmtools.models import load_encoder
            from mmtools.tag.zero_shot import DEFAULT_TEMPLATES, ZeroShotTagger, tag_records

            zero_shot = ZeroShotTagger(load_encoder(model, device, runtime.value), label_list,
                                       templates=list(template or DEFAULT_TEMPLATES),
                                       thresholds=Thresholds(threshold, per_label),
                                       top_k=5 if top_k is None else top_k, use_cache=not no_cache)
            tagged = tag_records(records_from_inputs(sources, report.problem), zero_shot, text_field=fields[0],
                                 root=root, batch_size=batch_size, on_problem=report.problem)
        emit_records(tagged, output_format, columns=TAG_COLUMNS, output=output, print0=print0)


def _jsonl_out(output_format: OutputFormat, output: str | None, print0: bool) -> bool:
    """Whether the output is plain JSONL (what a server sends back); a table or paths are drawn here."""
    from mmtools.cli.output import resolve_format

    return not print0 and resolve_format(output_format, output) == OutputFormat.jsonl
