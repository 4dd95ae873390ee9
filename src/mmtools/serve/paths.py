"""Where the server's socket lives: ``MMTOOLS_SERVER``, else a private runtime folder.

The socket is only ever created inside a folder that belongs to the user and that nobody else can enter
(mode 0700): ``$XDG_RUNTIME_DIR/mmtools`` where the session has one, else ``/tmp/mmtools-UID``. A folder
there that someone else owns, or that others can enter, is refused rather than used: otherwise another user
could answer our queries or read them.
"""

from __future__ import annotations

import os
import stat

# Strings, not pathlib: this module is on the client's start-up path, where every import counts.

ENV = "MMTOOLS_SERVER"
SOCKET_NAME = "server.sock"
DISABLED = frozenset({"off", "none", "no", "0", "false"})  # MMTOOLS_SERVER=off: never use a server


class UnsafeRuntimeDir(Exception):
    """The socket's folder is not private to this user; the message says why."""


def client_disabled() -> bool:
    return os.environ.get(ENV, "").strip().lower() in DISABLED


def runtime_dir() -> str:
    """The private folder for the default socket (not created here)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "mmtools")
    return f"/tmp/mmtools-{os.getuid()}"


def socket_path(explicit: str | os.PathLike[str] | None = None) -> str:
    """The socket named by ``explicit``, else ``MMTOOLS_SERVER``, else the well-known path."""
    if explicit and os.fspath(explicit).strip().lower() not in DISABLED:  # `serve --socket` from MMTOOLS_SERVER=off
        return os.path.expanduser(os.fspath(explicit))
    named = os.environ.get(ENV, "").strip()
    if named and named.lower() not in DISABLED:
        return os.path.expanduser(named)
    return os.path.join(runtime_dir(), SOCKET_NAME)


def check_private_dir(folder: str) -> None:
    """Raise UnsafeRuntimeDir unless ``folder`` is a real folder owned by us that only we can enter."""
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeRuntimeDir(f"{folder} is not a folder")
    if info.st_uid != os.getuid():
        raise UnsafeRuntimeDir(f"{folder} belongs to another user (uid {info.st_uid})")
    if info.st_mode & 0o077:
        raise UnsafeRuntimeDir(f"{folder} can be entered by other users (mode {stat.S_IMODE(info.st_mode):o})")


def ensure_private_dir(folder: str) -> None:
    """Create ``folder`` mode 0700 if absent, then check it is private (a pre-made trap is refused)."""
    try:
        os.makedirs(folder, mode=0o700)
    except FileExistsError:
        pass
    check_private_dir(folder)


def usable_socket(path: str) -> bool:
    """A client only talks to a socket that we own, in a folder only we can enter (cheap: two lstat calls)."""
    try:
        info = os.lstat(path)
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
            return False
        if os.path.dirname(path) == runtime_dir():
            check_private_dir(runtime_dir())
    except (OSError, UnsafeRuntimeDir):
        return False
    return True
