"""A fast path for `mmtools search` and `mmtools tag` when a server runs: straight to the socket client, before
typer loads.

Building the typer app imports typer, rich and every command module (about 0.1 s); a warm search takes a
few milliseconds. So ``main`` first tries this. A search command line is only forwarded: the server reads it
with the typer command's own parser (one parser for every door). For tag, the simple, valid forms of its
options are read here (TAG_OPTIONS, kept equal to the typer command's by a test). Anything else (help, a bad
value, an option it does not know, completion, no server) returns None, and the normal typer command runs,
with its own parsing, messages and in-process fallback.
"""

from __future__ import annotations

import os
import sys

QUIET = ("-q", "--quiet")


def parse_command(argv: list[str], command: str, table: dict[str, tuple[str, type | str | None]],
                  options: dict, positional: str) -> tuple[dict, bool] | None:
    """``(options, quiet)`` for ``[-q] COMMAND ARGS...`` read by ``table`` into ``options`` (its defaults;
    words that are not options go to ``options[positional]``), or None where typer should decide: another
    command, --help, an option not in the table or declined, a value that does not parse."""
    quiet = False
    position = 0
    while position < len(argv) and argv[position] in QUIET:
        quiet, position = True, position + 1
    if position >= len(argv) or argv[position] != command:
        return None
    rest = argv[position + 1:]
    i = 0
    while i < len(rest):
        word = rest[i]
        if not word.startswith("-") or word == "-":
            options[positional].append(word)
            i += 1
            continue
        name, has_value, value = word.partition("=")
        if name not in table:
            return None  # --help, --, combined short options...: typer decides
        destination, kind = table[name]
        if destination == "decline":
            return None
        if kind is None:
            if has_value:
                return None
            options[destination] = True
            i += 1
            continue
        if not has_value:
            if i + 1 >= len(rest):
                return None
            value, i = rest[i + 1], i + 1
        if kind == "many":
            options[destination].append(value)
        else:
            try:
                options[destination] = kind(value)
            except ValueError:
                return None
        i += 1
    return options, quiet


def search_args(argv: list[str]) -> tuple[list[str], bool] | None:
    """``(ARGS, quiet)`` for ``[-q] search ARGS...``, or None for another command."""
    quiet = False
    position = 0
    while position < len(argv) and argv[position] in QUIET:
        quiet, position = True, position + 1
    if position >= len(argv) or argv[position] != "search":
        return None
    return argv[position + 1:], quiet


def try_search(argv: list[str]) -> int | None:
    """Run ``search`` through a running server; its exit status, or None to go the normal way.

    Only forwards: the command line goes to the server as typed, and the server reads it with the typer
    command's own parser (mmtools.serve.argv), building the request the command would. What it leaves to the
    command (help, a bad option, a table for a terminal...) comes back here as None."""
    if os.environ.get("_MMTOOLS_COMPLETE"):
        return None
    parsed = search_args(argv)
    if parsed is None:
        return None
    from mmtools.serve import client, paths

    if paths.client_disabled() or not paths.usable_socket(paths.socket_path()):
        return None
    args, quiet = parsed
    problems = 0

    def warn(text: str) -> None:
        if not quiet:
            sys.stderr.write(f"mmtools search: warning: {' '.join(text.split())}\n")

    def on_problem(problem) -> None:
        nonlocal problems
        problems += 1
        sys.stderr.write(f"mmtools search: {' '.join(str(problem).split())}\n")

    try:
        handled = client.forward_search(args, on_problem=on_problem, on_warning=warn)
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("mmtools search: error: interrupted\n")
        return 130  # mmtools.errors.EXIT_INTERRUPTED (not imported: start-up time)
    except Exception as exc:
        from mmtools.errors import MmtoolsError

        if not isinstance(exc, MmtoolsError):
            raise
        for label, text in (("error", exc.message), ("hint", exc.hint)):
            if text:
                sys.stderr.write(f"mmtools search: {label}: {' '.join(text.split())}\n")
        return exc.exit_code
    if not handled:
        return None
    return 1 if problems else 0  # EXIT_SOME_INPUTS_FAILED / EXIT_OK


# ------------------------------------------------------------------------------------------------ tag

TAGGER_FAMILY = "mmtools-tagger"  # mmtools.tag.towers.FAMILY, named here so that no torch loads

# option -> (destination, type); "many": repeatable. Must match tag_command's options (tests/test_serve.py).
TAG_OPTIONS: dict[str, tuple[str, type | str | None]] = {
    "--labels": ("labels", str), "-l": ("labels", str), "--model": ("model", str), "-m": ("model", str),
    "--template": ("templates", "many"), "--top-k": ("top_k", int), "-k": ("top_k", int),
    "--threshold": ("threshold", float), "--thresholds": ("thresholds", str), "--field": ("fields", "many"),
    "-f": ("fields", "many"), "--root": ("root", str), "--device": ("device", str), "--runtime": ("runtime", str),
    "--output": ("output", str), "-o": ("output", str), "--format": ("format", str), "-F": ("format", str),
    "--batch-size": ("batch_size", int), "-b": ("batch_size", int), "--no-cache": ("no_cache", None),
    "--print0": ("decline", None), "-0": ("decline", None),
}


def parse_tag(argv: list[str]) -> tuple[dict, bool] | None:
    """``(options, quiet)`` for ``[-q] tag ARGS...`` when plain JSONL goes out through the default device, or
    None: then typer parses (help, a bad value, a table for a terminal...)."""
    try:
        batch_size = int(os.environ.get("MMTOOLS_BATCH_SIZE") or 32)
    except ValueError:
        return None
    defaults: dict = {"inputs": [], "labels": None, "model": os.environ.get("MMTOOLS_MODEL") or None,
                      "templates": [], "top_k": None, "threshold": None, "thresholds": None, "fields": [],
                      "root": None, "device": os.environ.get("MMTOOLS_DEVICE") or "auto",
                      "runtime": os.environ.get("MMTOOLS_RUNTIME") or "auto", "output": None, "format": "auto",
                      "batch_size": batch_size, "no_cache": False}
    parsed = parse_command(argv, "tag", TAG_OPTIONS, defaults, "inputs")
    if parsed is None:
        return None
    options, quiet = parsed
    if (options["top_k"] is not None and options["top_k"] < 1) or options["batch_size"] < 1 or (
            options["threshold"] is not None and not 0 <= options["threshold"] <= 1):
        return None  # typer's messages
    if options["device"] != "auto" or options["runtime"].lower() != "auto":
        return None
    to_terminal = options["output"] in (None, "-") and sys.stdout.isatty()
    if options["format"].lower() not in ("auto", "jsonl") or (options["format"].lower() == "auto" and to_terminal):
        return None  # a table, paths or csv: drawn by the typer command
    if not options["inputs"] and (sys.stdin is None or sys.stdin.isatty()):
        return None  # no inputs at all: typer's usage message
    return options, quiet


def tag_request(model: str | None, labels: str | None, templates: list[str] | None, thresholds: str | None,
                fields: list[str]) -> tuple[bool, list[str] | None, dict[str, float] | None]:
    """The light checks of `mmtools tag` (no torch): ``(trained, labels, per-label thresholds)``, where
    ``trained`` says whether ``model`` is a trained tagger. Raises UsageError as the command would."""
    from mmtools.errors import UsageError
    from mmtools.models.registry import resolve_model
    from mmtools.tag.labels import read_labels, read_thresholds

    ref = resolve_model(model) if model is not None else None
    if ref is not None and ref.is_local and ref.family == TAGGER_FAMILY:
        if labels is not None or templates:
            raise UsageError(f"{model} is a trained tagger with its own labels; --labels and --template "
                             "are for zero-shot tagging with a retrieval model")
        known = list((ref.manifest.get("tagger") or {}).get("labels") or []) or None
        return True, None, read_thresholds(thresholds, known) if thresholds else None
    if labels is None:
        raise UsageError("zero-shot tagging needs a label list",
                         hint="pass --labels labels.txt (one label per line), or --model TAGGER_DIR "
                              "trained with `mmtools train tagger`")
    label_list = read_labels(labels)
    if len(fields) > 1:
        raise UsageError("zero-shot tagging reads one text field", hint="give --field once")
    return False, label_list, read_thresholds(thresholds, label_list) if thresholds else None


def try_tag(argv: list[str]) -> int | None:
    """Run ``tag`` through a running server; its exit status, or None to go the normal way. Building the
    typer app costs most of a second; a warm tag call takes a few milliseconds."""
    if os.environ.get("_MMTOOLS_COMPLETE"):
        return None
    parsed = parse_tag(argv)
    if parsed is None:
        return None
    from mmtools.serve import paths

    if paths.client_disabled() or not paths.usable_socket(paths.socket_path()):
        return None
    options, quiet = parsed
    import logging

    said: list[str] = []  # the library's warnings (a label given twice), said only if the server answers

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(f"mmtools tag: warning: {' '.join(record.getMessage().split())}\n")

    logger = logging.getLogger("mmtools")
    keep = Keep(logging.WARNING)
    logger.addHandler(keep)
    propagate, logger.propagate = logger.propagate, False
    problems = 0

    def on_problem(problem) -> None:
        nonlocal problems
        problems += 1
        said.append(f"mmtools tag: {' '.join(str(problem).split())}\n")
        flush()

    def flush() -> None:
        if keep in logger.handlers:  # once the server answers, everything is said as it comes
            logger.removeHandler(keep)
            logger.propagate = propagate
        for line in said:
            if quiet and ": warning: " in line:
                continue
            sys.stderr.write(line)
        said.clear()

    from mmtools.errors import MmtoolsError
    from mmtools.serve import client

    try:
        fields = options["fields"] or ["text"]
        _trained, labels, per_label = tag_request(options["model"], options["labels"], options["templates"] or None,
                                                  options["thresholds"], fields)
        handled = client.tag(options["inputs"] or ["-"], model=options["model"], labels=labels,
                             templates=options["templates"] or None, top_k=options["top_k"],
                             threshold=options["threshold"], thresholds=per_label, fields=fields,
                             root=options["root"], batch_size=options["batch_size"],
                             use_cache=not options["no_cache"], output=options["output"], on_problem=on_problem)
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("mmtools tag: error: interrupted\n")
        return 130
    except MmtoolsError as exc:
        flush()
        for label, text in (("error", exc.message), ("hint", exc.hint)):
            if text:
                sys.stderr.write(f"mmtools tag: {label}: {' '.join(text.split())}\n")
        return exc.exit_code
    finally:
        if keep in logger.handlers:
            logger.removeHandler(keep)
            logger.propagate = propagate
    if not handled:
        return None  # the typer command reads the labels again, and says their warnings itself
    flush()
    return 1 if problems else 0


def silence_stdout() -> None:
    """After the reader of our stdout went away, stop Python complaining when it flushes at exit.

    Here rather than in cli.common so the fast path stays free of typer; common uses it too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
