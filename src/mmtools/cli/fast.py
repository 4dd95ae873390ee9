"""A fast path for `mmtools search` when a server runs: straight to the socket client, before typer loads.

Building the typer app imports typer, rich and every command module (about 0.1 s); a warm search takes a
few milliseconds. So ``main`` first tries this: it reads only the simple, valid forms of the search options
(OPTIONS, kept equal to the typer command's by a test) and hands them to ``mmtools.serve.client``. Anything
else (help, a bad value, an option it does not know, completion, no server) returns None, and the normal
typer command runs, with its own parsing, messages and in-process fallback.
"""

from __future__ import annotations

import os
import sys

# option -> (destination, type); None type: a flag. Must match search_command's options (tests/test_serve.py).
OPTIONS: dict[str, tuple[str, type | None]] = {
    "--image": ("images", str), "-k": ("k", int), "--top-k": ("k", int), "--min-score": ("min_score", float),
    "--index": ("index", str), "-i": ("index", str), "--field": ("field", str), "-f": ("field", str),
    "--lines": ("lines", None), "--model": ("model", str), "-m": ("model", str), "--device": ("device", str),
    "--runtime": ("runtime", str),
    "--output": ("output", str), "-o": ("output", str),
    # Views and fusions the typer command draws itself: their presence sends the search the normal way.
    "--weights": ("decline", str), "--format": ("decline", str), "-F": ("decline", str),
    "--print0": ("decline", None), "-0": ("decline", None), "--montage": ("decline", str),
    "--html": ("decline", str), "--group-by": ("decline", str), "--fields": ("decline", str),
    "--then": ("decline", str), "--within": ("decline", float),
    "--mode": ("mode", str), "--where": ("where", str), "--no-restore": ("no_restore", None),
}
MODES = ("vector", "keyword", "hybrid")  # as mmtools.ranking.MODES (not imported: start-up time)
QUIET = ("-q", "--quiet")


def parse_search(argv: list[str]) -> tuple[dict, bool] | None:
    """``(options, quiet)`` for ``[-q] search ARGS...``, or None when the fast path should not be tried."""
    quiet = False
    position = 0
    while position < len(argv) and argv[position] in QUIET:
        quiet, position = True, position + 1
    if position >= len(argv) or argv[position] != "search":
        return None
    options: dict = {"texts": [], "images": [], "k": 10, "min_score": None, "index": None, "field": "text",
                     "lines": False, "model": None, "device": None, "runtime": None, "output": None,
               "mode": None, "where": [], "no_restore": False}
    rest = argv[position + 1:]
    i = 0
    while i < len(rest):
        word = rest[i]
        if not word.startswith("-") or word == "-":
            options["texts"].append(word)
            i += 1
            continue
        name, has_value, value = word.partition("=")
        if name not in OPTIONS:
            return None  # --help, --, combined short options...: typer decides
        destination, kind = OPTIONS[name]
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
        try:
            parsed = kind(value)
        except ValueError:
            return None
        if destination in ("images", "where"):
            options[destination].append(parsed)
        elif destination == "index" and options["index"] is not None:
            return None  # several indexes: a fusion, done in-process
        else:
            options[destination] = parsed
        i += 1
    if options["output"] in (None, "-") and sys.stdout.isatty():
        return None  # a terminal gets the table view, which the typer command draws
    if options["mode"] is not None and options["mode"] not in MODES:
        return None  # typer names the choices
    if options["k"] < 1 or (options["device"] or os.environ.get("MMTOOLS_DEVICE") or "auto") != "auto":
        return None  # a bad -k gets typer's message; an explicit device is honoured in-process
    if not options["texts"] and not options["images"] and not options["lines"] and stdin_holds_sequences():
        return None  # temporal queries (events in order) are answered in-process
    if (options["runtime"] or os.environ.get("MMTOOLS_RUNTIME") or "auto").lower() != "auto":
        return None  # so is an explicit runtime (the server runs its own)
    return options, quiet


def stdin_holds_sequences() -> bool:
    """Whether piped standard input starts with a temporal query record (``{"steps": [...]}``), seen
    without consuming anything (the buffered reader's peek)."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None or not hasattr(stream, "peek"):
        return False
    try:
        if stream.isatty():
            return False
        first = stream.peek(1 << 16).lstrip()
    except (OSError, ValueError):
        return False
    return first.startswith(b"{") and b'"steps"' in first.split(b"\n", 1)[0]


def try_search(argv: list[str]) -> int | None:
    """Run ``search`` through a running server; its exit status, or None to go the normal way."""
    if os.environ.get("_MMTOOLS_COMPLETE"):
        return None
    parsed = parse_search(argv)
    if parsed is None:
        return None
    from mmtools.serve import client, paths

    if paths.client_disabled() or not paths.usable_socket(paths.socket_path()):
        return None
    options, quiet = parsed
    problems = 0

    def warn(text: str) -> None:
        sys.stderr.write(f"mmtools search: warning: {' '.join(text.split())}\n")

    def on_problem(problem) -> None:
        nonlocal problems
        problems += 1
        sys.stderr.write(f"mmtools search: {' '.join(str(problem).split())}\n")

    try:
        handled = client.search(texts=options["texts"], images=options["images"], k=options["k"],
                                min_score=options["min_score"],
                                index=options["index"] or os.environ.get("MMTOOLS_INDEX") or "idx.faiss",
                                field=options["field"], lines=options["lines"], model=options["model"],
                                output=options["output"], on_problem=on_problem, mode=options["mode"],
                                where=options["where"], no_restore=options["no_restore"],
                                on_warning=(lambda text: None) if quiet else warn)
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


def silence_stdout() -> None:
    """After the reader of our stdout went away, stop Python complaining when it flushes at exit.

    Here rather than in cli.common so the fast path stays free of typer; common uses it too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
