#!/usr/bin/env python3
"""Generate the man pages (man/) and shell completion scripts (completions/) from the live mmtools CLI.

    .venv/bin/python scripts/gen_docs.py           # regenerate man/ and completions/
    .venv/bin/python scripts/gen_docs.py --check   # exit 1, naming the files, if anything on disk is stale

The man pages come from walking the typer app's command tree (`typer.main.get_command(app)`): names, help
texts, options, defaults and environment variables are read from the parameters themselves, so a new or
changed command or option only needs a rerun. The pages carry the package version and no date, and the
completion scripts come from the CLI itself (`_MMTOOLS_COMPLETE=source_bash mmtools`, run offline with a clean
environment), so regenerating an unchanged tree gives the same bytes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import unicodedata
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
MAN_DIR = ROOT / "man"
COMPLETIONS_DIR = ROOT / "completions"
PROG = "mmtools"
SHELLS = ("bash", "zsh", "fish")

# Document the working tree, whichever interpreter runs this script. (The pages are built from the command
# tree's attributes, never from rendered --help, so colour and terminal settings cannot leak into them.)
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

import typer  # noqa: E402
import typer.main  # noqa: E402

from mmtools import __version__  # noqa: E402
from mmtools.cli.app import app  # noqa: E402

# What goes in mmtools(1) beyond the command tree. Keep EXIT_STATUS in step with mmtools.errors.
EXIT_STATUS = [
    ("0", "Success: every input was processed."),
    ("1", "The command finished, but some inputs were skipped; each one is named on standard error."),
    ("2", "Usage error: an unknown option, a bad value, or a missing argument."),
    ("3", "Fatal error: nothing useful could be done (a missing model, an unusable index, a model mismatch "
          "between an index and a query, or a command that is not available yet)."),
    ("130", "Interrupted (Ctrl-C)."),
]
EXAMPLES = [
    ("Embed every image under a folder and build an index from the records:",
     "mmtools embed-images photos/ | mmtools index -o idx.faiss"),
    ("Search the index (idx.faiss by default) with a Vietnamese text query:",
     'mmtools search "xe hơi màu đỏ"'),
]
# Variables the library reads directly rather than through an option's envvar.
EXTRA_ENVIRONMENT = [
    ("MMTOOLS_DEBUG", "When set (to anything non-empty), internal errors print a Python traceback and model "
                      "libraries keep their own log messages."),
    ("MMTOOLS_VNCORENLP_DIR", "The VnCoreNLP directory used by the vncorenlp word segmentation back end."),
    ("MMTOOLS_HOME", "Where mmtools keeps the names given with mmtools models import (models.json); default "
                     "$XDG_DATA_HOME/mmtools, else ~/.local/share/mmtools."),
    ("MMTOOLS_CACHE_DIR", "mmtools' own cache (file hashes, cached vectors); default $XDG_CACHE_HOME/mmtools, "
                          "else ~/.cache/mmtools."),
    ("NO_COLOR", "When set (to anything non-empty), tables on a terminal are drawn without colour or bold."),
    ("HF_HOME", "Where Hugging Face models are cached (models are downloaded once, then used offline)."),
    ("HF_ENDPOINT", "Another Hugging Face hub (a mirror) to download models from."),
    ("HF_HUB_OFFLINE", "Set to 1 to never contact the Hugging Face hub; models must already be cached. "
                       "TRANSFORMERS_OFFLINE=1 does the same."),
]


# ------------------------------------------------------------------------------------------ the command tree


@dataclass
class Param:
    kind: str  # "option" or "argument"
    name: str
    opts: list[str]
    secondary_opts: list[str]
    metavar: str | None  # None for flags
    help: str
    default: str | None
    envvars: list[str]
    repeatable: bool
    required: bool
    range: str | None
    choices: list[str] | None


@dataclass
class Command:
    name: str
    help: str
    params: list[Param]
    planned: bool
    accepts_anything: bool
    has_help_option: bool
    examples: list[str] = field(default_factory=list)
    subcommands: list[str] = field(default_factory=list)  # a group's commands ("models" -> list, pull...)


def root_command():
    return typer.main.get_command(app)


def is_planned(command) -> bool:
    """A command registered by mmtools.cli.planned: it accepts anything and says it is not available yet."""
    callback = command.callback
    return getattr(callback, "__module__", None) == "mmtools.cli.planned" or \
        getattr(getattr(callback, "__wrapped__", None), "__module__", None) == "mmtools.cli.planned"


def _type_label(param) -> tuple[str, list[str] | None]:
    """The metavar shown after an option (the CLI's own, readable: see mmtools.cli.help), and the choices
    if the type is an enum."""
    descriptor = param.type_descriptor
    annotation = descriptor.annotation
    args = getattr(annotation, "__args__", None)
    if getattr(annotation, "__origin__", None) in (list, tuple) and args:
        annotation = args[0]
    choices = None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = [str(member.value) for member in annotation]
    if getattr(param, "metavar", None):
        return param.metavar, choices
    from mmtools.cli.help import readable_metavar

    return readable_metavar(param) or "VALUE", choices


def _default_text(param) -> str | None:
    if param.show_default is False:
        return None
    if isinstance(param.show_default, str):
        return param.show_default
    value = param.default
    if value is None or callable(value):
        return None
    if getattr(param, "is_flag", False):
        return None  # a flag is off unless given
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v.value if isinstance(v, Enum) else v) for v in value) or None
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def _range_text(param) -> str | None:
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is None and high is None:
        return None
    if high is None:
        return f"at least {low}"
    if low is None:
        return f"at most {high}"
    return f"from {low} to {high}"


def _param(param) -> Param:
    is_option = param.param_type_name == "option"
    flag = is_option and (getattr(param, "is_flag", False) or getattr(param, "count", False))
    label, choices = _type_label(param)
    envvar = param.envvar
    envvars = [] if envvar is None else [envvar] if isinstance(envvar, str) else list(envvar)
    return Param(
        kind=param.param_type_name,
        name=param.name,
        opts=list(param.opts),
        secondary_opts=list(getattr(param, "secondary_opts", []) or []),
        metavar=None if flag else label,
        help=(param.help or "").strip() if hasattr(param, "help") else "",
        default=_default_text(param),
        envvars=envvars,
        repeatable=bool(param.multiple) or param.nargs == -1,
        required=bool(param.required),
        range=_range_text(param),
        choices=choices,
    )


def _split_examples(text: str) -> tuple[str, list[str]]:
    """Docstring paragraphs starting 'Example:' become EXAMPLES entries; the rest stays the description."""
    kept, examples = [], []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        match = re.match(r"\s*Examples?:\s*(.*)", paragraph, re.S)
        if match:
            examples.extend(line.strip() for line in match.group(1).splitlines() if line.strip())
        else:
            kept.append(paragraph)
    return "\n\n".join(kept), examples


def _collect_commands(group, ctx, prefix: str, commands: list[Command]) -> None:
    """Every command below ``group``; a nested group ("models") comes before its own commands
    ("models list", ...), each of which gets its own page (mmtools-models-list.1)."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        full = f"{prefix}{name}"
        sub_ctx = command.make_context(name, [], parent=ctx, resilient_parsing=True)
        help_text, examples = _split_examples(command.help or "")
        params = [_param(p) for p in command.get_params(sub_ctx) if not getattr(p, "hidden", False)]
        children = [n for n in getattr(command, "list_commands", lambda c: [])(sub_ctx)]
        commands.append(Command(
            name=full, help=help_text, params=params, planned=is_planned(command),
            accepts_anything=bool(command.context_settings.get("ignore_unknown_options")),
            has_help_option=command.get_help_option(sub_ctx) is not None, examples=examples,
            subcommands=children))
        if children:
            _collect_commands(command, sub_ctx, f"{full} ", commands)


def collect() -> tuple[Command, list[Command]]:
    """The top-level command and each subcommand, in the order `mmtools --help` lists them."""
    group = root_command()
    ctx = group.make_context(PROG, [], resilient_parsing=True)
    top_help, _ = _split_examples(group.help or "")
    top = Command(name=PROG, help=top_help, params=[_param(p) for p in group.get_params(ctx) if not p.hidden],
                  planned=False, accepts_anything=False, has_help_option=True)
    commands: list[Command] = []
    _collect_commands(group, ctx, "", commands)
    return top, commands


def _command(name: str, command, ctx) -> Command:
    help_text, examples = _split_examples(command.help or "")
    params = [_param(p) for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    return Command(name=name, help=help_text, params=params, planned=is_planned(command),
                   accepts_anything=bool(command.context_settings.get("ignore_unknown_options")),
                   has_help_option=command.get_help_option(ctx) is not None, examples=examples)


# ------------------------------------------------------------------------------------------------- roff


def esc(text: str) -> str:
    """Escape running text for roff: backslashes, hyphens (as \\-), a leading dot or apostrophe, and every
    non-ASCII character as \\[uXXXX] (what preconv does), so that the pages render the same Vietnamese text
    through man-db, plain `groff -man -Tutf8` and mandoc alike."""
    text = unicodedata.normalize("NFC", text).replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def paragraphs(text: str) -> list[str]:
    """Each blank-line-separated paragraph as one line (roff fills it)."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{esc(text)}\\fR"


def first_sentence(text: str) -> str:
    """The summary for NAME: the first sentence, lower-cased unless it starts with an acronym."""
    first = paragraphs(text)[0] if text.strip() else ""
    first = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0].rstrip(".")
    return first[:1].lower() + first[1:] if first[:1].isupper() and not first[1:2].isupper() else first


def page_name(command: Command) -> str:
    return PROG if command.name == PROG else f"{PROG}-{command.name.replace(' ', '-')}"


def header(command: Command, summary: str) -> list[str]:
    title = page_name(command).upper()
    return [
        f'.\\" Generated by scripts/gen_docs.py from the {PROG} command tree; do not edit by hand.',
        '.\\" Regenerate with: .venv/bin/python scripts/gen_docs.py',
        f'.TH "{esc(title)}" "1" "" "{PROG} {esc(__version__)}" "{PROG} manual"',
        ".nh",  # no hyphenation: option and command names must stay whole
        ".ad l",
        ".SH NAME",
        f"{esc(page_name(command))} \\- {esc(summary)}",
    ]


def option_heading(param: Param) -> str:
    def spell(opts: list[str]) -> str:
        ordered = sorted(opts, key=lambda o: (o.startswith("--"), o))  # short spellings first
        text = ", ".join(bold(o) for o in ordered)
        if param.metavar:
            text += " " + italic(param.metavar)
        return text

    heading = spell(param.opts)
    if param.secondary_opts:
        heading += ", " + spell(param.secondary_opts)
    return heading


def option_details(param: Param) -> list[str]:
    notes = []
    if param.repeatable and param.kind == "option":
        notes.append("May be given more than once.")
    if param.choices:
        notes.append("One of: " + ", ".join(bold(c) for c in param.choices) + ".")
    if param.range:
        notes.append(f"Must be {esc(param.range)}.")
    if param.required:
        notes.append("Required.")
    if param.default is not None:
        notes.append(f"Default: {bold(param.default)}.")
    if param.envvars:
        notes.append("Environment: " + ", ".join(bold(v) for v in param.envvars) + ".")
    return notes


def options_section(params: list[Param], title: str = "OPTIONS") -> list[str]:
    options = [p for p in params if p.kind == "option"]
    if not options:
        return []
    lines = [f".SH {title}"]
    for param in options:
        lines += [".TP", option_heading(param)]
        texts = paragraphs(param.help) or [""]
        lines.append(esc(texts[0]))
        for more in texts[1:]:
            lines += [".IP", esc(more)]
        details = option_details(param)
        if details:
            lines += [".br", " ".join(details)]
    return lines


def arguments_section(params: list[Param]) -> list[str]:
    arguments = [p for p in params if p.kind == "argument"]
    if not arguments:
        return []
    lines = [".SH ARGUMENTS"]
    for param in arguments:
        name = italic(param.metavar or param.name.upper()) + ("..." if param.repeatable else "")
        lines += [".TP", name]
        texts = paragraphs(param.help) or [""]
        lines.append(esc(texts[0]))
        for more in texts[1:]:
            lines += [".IP", esc(more)]
        details = [d for d in option_details(param) if not d.startswith("May be given")]
        if param.required:
            pass  # option_details() already says "Required."
        elif param.repeatable:
            details.insert(0, "Optional; any number may be given.")
        else:
            details.insert(0, "Optional.")
        lines += [".br", " ".join(details)]
    return lines


def examples_section(examples: list[tuple[str, str]]) -> list[str]:
    if not examples:
        return []
    lines = [".SH EXAMPLES"]
    for text, command in examples:
        if text:
            lines += [".PP", esc(text)]
        lines += [".PP", ".RS 4", ".nf", esc(command), ".fi", ".RE"]
    return lines


def usage_pieces(command: Command) -> list[str]:
    pieces = [bold(PROG), "[" + italic("GLOBAL OPTIONS") + "]", *(bold(word) for word in command.name.split())]
    if command.subcommands:
        return pieces + [italic("COMMAND"), "[" + italic("ARGS") + "]..."]
    if command.accepts_anything:
        return pieces + ["[" + italic("ARGS") + "]..."]
    if any(p.kind == "option" for p in command.params):
        pieces.append("[" + italic("OPTIONS") + "]")
    for param in command.params:
        if param.kind != "argument":
            continue
        name = italic(param.metavar or param.name.upper()) + ("..." if param.repeatable else "")
        pieces.append(name if param.required else f"[{name}]")
    return pieces


def subcommand_page(command: Command, commands: list[Command]) -> str:
    summary = first_sentence(command.help) or command.name
    lines = header(command, summary)
    lines += [".SH SYNOPSIS", " ".join(usage_pieces(command))]
    lines.append(".SH DESCRIPTION")
    for number, text in enumerate(paragraphs(command.help)):
        lines += ([] if number == 0 else [".PP"]) + [esc(text)]
    if command.planned:
        lines += [".PP",
                  f"This command is not available yet in {esc(PROG)} {esc(__version__)}. It is listed so that "
                  "scripts and completion know its name: it accepts any arguments, does nothing, prints an "
                  "error on standard error and exits with status 3."]
    if command.subcommands:
        lines.append(".SH COMMANDS")
        for child in command.subcommands:
            full = f"{command.name} {child}"
            summary = next((paragraphs(c.help)[0] for c in commands if c.name == full and c.help.strip()), "")
            lines += [".TP", bold(child), esc(summary), ".br",
                      f"See {bold(PROG + '-' + full.replace(' ', '-'))}(1)."]
    lines += arguments_section(command.params)
    lines += options_section(command.params)
    envvars = _environment(command.params)
    if envvars:
        lines.append(".SH ENVIRONMENT")
        for name, uses in envvars.items():
            lines += [".TP", bold(name), "Default for " + ", ".join(bold(o) for o in uses) + "."]
    lines += [".SH EXIT STATUS",
              f"See {bold(PROG)}(1): 0 success; 1 finished but some inputs were skipped (each named on "
              "standard error); 2 usage error; 3 fatal error; 130 interrupted."]
    if command.planned:
        lines += [".PP", "This command always exits with status 3 for now."]
    lines += examples_section([("", example) for example in command.examples])
    lines += [".SH SEE ALSO", see_also([PROG] + [page_name(c) for c in commands if c is not command])]
    return "\n".join(lines) + "\n"


def see_also(names: list[str]) -> str:
    return ",\n".join(f".BR {esc(name)} (1)" for name in names)


def _environment(params: list[Param]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for param in params:
        for name in param.envvars:
            spelled = max(param.opts, key=len) if param.opts else param.name
            if spelled not in found.setdefault(name, []):
                found[name].append(spelled)
    return found


def overview_page(top: Command, commands: list[Command]) -> str:
    lines = header(top, first_sentence(top.help))
    lines += [".SH SYNOPSIS",
              f"{bold(PROG)} [{italic('GLOBAL OPTIONS')}] {italic('COMMAND')} [{italic('ARGS')}]...",
              ".br",
              f"{bold(PROG)} {italic('COMMAND')} {bold('--help')}"]
    lines.append(".SH DESCRIPTION")
    description = [p for p in paragraphs(top.help) if not p.lower().startswith("exit status")]
    for number, text in enumerate(description):
        lines += ([] if number == 0 else [".PP"]) + [esc(text)]
    lines += [".PP", f"Each command has its own manual page, {bold(PROG + '-COMMAND')}(1), and its own "
                     f"{bold('--help')}."]
    lines.append(".SH COMMANDS")
    for command in commands:
        summary = paragraphs(command.help)[0] if command.help.strip() else ""
        lines += [".TP", bold(command.name), esc(summary), ".br", f"See {bold(page_name(command))}(1)."]
    lines += options_section(top.params, "GLOBAL OPTIONS")
    lines += [".PP", "Global options go before the command name."]

    lines.append(".SH ENVIRONMENT")
    uses: dict[str, list[tuple[str, str]]] = {}
    helps: dict[str, str] = {}
    for command in [top, *commands]:
        for param in command.params:
            for name in param.envvars:
                spelled = max(param.opts, key=len) if param.opts else param.name
                uses.setdefault(name, []).append((command.name, spelled))
                helps[name] = param.help if helps.get(name, param.help) == param.help else ""
    for name in sorted(uses):
        by_option: dict[str, list[str]] = {}
        for command_name, spelled in uses[name]:
            by_option.setdefault(spelled, []).append(command_name)
        where = "; ".join(f"{bold(option)} of " + ", ".join(bold(c) for c in names)
                          for option, names in by_option.items())
        first = paragraphs(helps[name])[0] if helps[name].strip() else ""
        lines += [".TP", bold(name), f"Default for {where}." + (f" {esc(first)}" if first else "")]
    for name, text in EXTRA_ENVIRONMENT:
        if name not in uses:
            lines += [".TP", bold(name), esc(text)]

    lines.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS:
        lines += [".TP", bold(code), esc(text)]
    lines += examples_section(EXAMPLES)
    lines += [".SH SEE ALSO", see_also([page_name(c) for c in commands])]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- outputs


def _cli_command() -> list[str]:
    """The installed console script beside this interpreter, else the same entry point through it."""
    script = Path(sys.executable).parent / PROG
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from mmtools.cli import main; main()"]


def completion_script(shell: str) -> str:
    # A clean environment: typer forces colour when GITHUB_ACTIONS, FORCE_COLOR or PY_COLORS is set.
    env = {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": str(SRC),
        "PYTHONDONTWRITEBYTECODE": "1",
        "_TYPER_FORCE_DISABLE_TERMINAL": "1",
        "TERMINAL_WIDTH": "80",
        f"_{PROG.upper()}_COMPLETE": f"source_{shell}",
    }
    result = subprocess.run(_cli_command(), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0 or not result.stdout.strip():
        raise SystemExit(f"gen_docs: `_{PROG.upper()}_COMPLETE=source_{shell} {PROG}` failed "
                         f"(exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip("\n") + "\n"


def generate() -> dict[Path, bytes]:
    top, commands = collect()
    files = {MAN_DIR / f"{PROG}.1": overview_page(top, commands)}
    for command in commands:
        files[MAN_DIR / f"{page_name(command)}.1"] = subcommand_page(command, commands)
    for shell in SHELLS:
        files[COMPLETIONS_DIR / f"{PROG}.{shell}"] = completion_script(shell)
    return {path: text.encode("utf-8") for path, text in files.items()}


def _obsolete(files: dict[Path, bytes]) -> list[Path]:
    """Generated-looking files on disk that this run no longer produces (e.g. a removed command's page)."""
    found = sorted(MAN_DIR.glob(f"{PROG}*.1")) + sorted(COMPLETIONS_DIR.glob(f"{PROG}.*"))
    return [path for path in found if path not in files]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing the files that are stale, missing or obsolete")
    args = parser.parse_args(argv)
    files = generate()
    problems = []
    for path, data in files.items():
        if not path.exists():
            problems.append(("missing", path))
        elif path.read_bytes() != data:
            problems.append(("stale", path))
    obsolete = _obsolete(files)
    problems += [("obsolete", path) for path in obsolete]

    if args.check:
        if problems:
            for what, path in problems:
                print(f"{what}: {path.relative_to(ROOT)}", file=sys.stderr)
            print(f"gen_docs: {len(problems)} file(s) out of date; run: .venv/bin/python scripts/gen_docs.py",
                  file=sys.stderr)
            return 1
        print(f"gen_docs: {len(files)} files up to date", file=sys.stderr)
        return 0

    for what, path in problems:
        if what == "obsolete":
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[path])
        print(f"{'removed' if what == 'obsolete' else 'wrote'} {path.relative_to(ROOT)} ({what})", file=sys.stderr)
    print(f"gen_docs: {len(files)} files, {len(problems)} changed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
