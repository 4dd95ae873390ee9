"""The Hugging Face hub, politely: where its cache is, whether it can be reached (asked once, quickly), and
its client kept quiet (no retry chatter, no warnings) so that a failure is one clear mmtools message.

A model already in the cache is loaded without any of this: the reachability probe only runs after loading
from the cache has failed, so offline detection costs the cached case nothing.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
# How long to wait for the hub (or the proxy) to accept a TCP connection before calling it unreachable.
PROBE_TIMEOUT_S = 3.0


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloaded models (HF_HUB_CACHE, else HF_HOME/hub, else the default)."""
    explicit = os.environ.get("HF_HUB_CACHE", "").strip() or os.environ.get("HUGGINGFACE_HUB_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME", "").strip() or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface")
    return Path(home).expanduser() / "hub"


def offline_by_choice() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_unavailable_reason(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the hub (or the proxy in front of it) accepts a connection within ``timeout`` seconds; else
    why not, as a phrase ("the hub is disabled (HF_HUB_OFFLINE)", "the Hugging Face hub ... cannot be
    reached: ..."). Name resolution counts toward the timeout (it runs in a thread we stop waiting for)."""
    if offline_by_choice():
        return "the hub is disabled (HF_HUB_OFFLINE)"
    endpoint = urlsplit(hub_endpoint())
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    target = _proxy_for(endpoint.scheme, host) or (host, port)
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            socket.create_connection(target, timeout=timeout).close()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - any failure means "cannot be reached"
            outcome.append(exc)

    worker = threading.Thread(target=probe, name="mmtools-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    where = f"{host}" if target == (host, port) else f"{host} through the proxy {target[0]}:{target[1]}"
    if not outcome:
        return f"the Hugging Face hub ({where}) cannot be reached: no answer within {timeout:g} s"
    if outcome[0] is not None:
        return f"the Hugging Face hub ({where}) cannot be reached: {_reason(outcome[0])}"
    return None


def quiet_hub() -> None:
    """Short network timeouts, and no warnings, retry messages or (off a terminal) progress bars from the
    hub client; MMTOOLS_DEBUG keeps them all."""
    if os.environ.get("MMTOOLS_DEBUG"):
        return
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "20")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    import logging
    import warnings

    warnings.filterwarnings("ignore", module=r"huggingface_hub(\..*)?")
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    except Exception:  # an older or newer client without this helper: the logger level above suffices
        pass


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """The proxy requests would go through for ``host``, honouring NO_PROXY."""
    no_proxy = os.environ.get("NO_PROXY", os.environ.get("no_proxy", ""))
    if any(host == entry.strip().lstrip(".") or host.endswith("." + entry.strip().lstrip("."))
           for entry in no_proxy.split(",") if entry.strip()) or no_proxy.strip() == "*":
        return None
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        value = os.environ.get(name, "").strip()
        if value:
            proxy = urlsplit(value if "://" in value else f"http://{value}")
            if proxy.hostname:
                return proxy.hostname, proxy.port or (443 if proxy.scheme == "https" else 80)
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return "its name does not resolve (no network or no DNS)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "no answer"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
