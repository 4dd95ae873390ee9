"""JPEG renditions of indexed pictures for the web page: thumbnails, and viewable copies of the rest.

A rendition is made once and kept in a folder of the cache (``MMTOOLS_CACHE_DIR/thumbnails``), named by a
hash of what it depends on (the file's path, size and modification time, the moment of a video frame, the
size asked for), so a changed photo gets a new one and the old one ages out. The folder is bounded: when it
grows past ``max_bytes`` the least recently used files go (a hit refreshes its file's time, at most once a
minute, so reading stays cheap), down to 80 % of the bound. Files are written under a temporary name and
renamed, so a killed server or two at once never leave a torn JPEG.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmtools.images import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image, stat_image_file
from mmtools.records import atomic_path

THUMBNAIL_SIZE = 320  # longest side; sharp in a ~160 px cell on a 2× screen
VIEW_SIZE = 2048  # longest side of the viewable copy of a picture browsers cannot show as it is
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
JPEG_QUALITY = 82
TOUCH_AFTER_S = 60.0
# What current Chromium and Firefox display as they are; other files (TIFF, HEIC, video frames) are converted.
BROWSER_FORMATS = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".jpe": "image/jpeg", ".jfif": "image/jpeg",
                   ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif", ".avif": "image/avif",
                   ".bmp": "image/bmp"}


@dataclass(frozen=True)
class Picture:
    """One picture of a record: an image file, or the frame of a video at ``time`` seconds."""

    path: str
    time: float | None = None

    def version(self) -> str:
        """Changes whenever the file does (raises ImageDecodeError when it cannot be read)."""
        info = stat_image_file(self.path)
        return f"{os.path.abspath(self.path)}\0{info.st_size}\0{info.st_mtime_ns}\0{self.time}"

    def browser_type(self) -> str | None:
        """The media type to send the file as it is, when browsers show it; None when it needs converting."""
        return None if self.time is not None else BROWSER_FORMATS.get(Path(self.path).suffix.lower())

    def load(self, max_pixels: int, draft_size: int) -> Any:
        if self.time is None:
            return load_image(self.path, max_pixels=max_pixels, draft_size=draft_size)
        return video_frame(self.path, self.time, max_pixels)


@dataclass(frozen=True)
class Rendition:
    path: Path
    etag: str


class RenditionCache:
    """Renditions of pictures, made on first use and kept on disk within ``max_bytes``."""

    def __init__(self, folder: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._lock = threading.Lock()
        self._bytes = sum(size for _, size, _ in self._files())
        self.made = 0  # renditions made (not found on disk), for tests

    def get(self, picture: Picture, size: int = THUMBNAIL_SIZE) -> Rendition:
        """The JPEG of ``picture`` at most ``size`` pixels on its longest side (ImageDecodeError when the
        picture cannot be read)."""
        key = hashlib.sha256(f"{picture.version()}\0{size}".encode("utf-8", "surrogateescape")).hexdigest()
        path = self.folder / f"{key[:2]}" / f"{key}.jpg"
        etag = f'"{key[:32]}"'
        try:
            age = time.time() - path.stat().st_mtime
            if age > TOUCH_AFTER_S:
                os.utime(path)
            return Rendition(path, etag)
        except FileNotFoundError:
            pass
        image = picture.load(self.max_pixels, size)
        image.thumbnail((size, size))
        with atomic_path(path, ".jpg") as tmp:
            image.save(tmp, "JPEG", quality=JPEG_QUALITY, optimize=True)
        self.made += 1
        self._added(path.stat().st_size)
        return Rendition(path, etag)

    def _added(self, size: int) -> None:
        with self._lock:
            self._bytes += size
            if self._bytes <= self.max_bytes:
                return
            files = sorted(self._files(), key=lambda entry: entry[2])  # oldest use first
            self._bytes = sum(size for _, size, _ in files)
            target = int(self.max_bytes * 0.8)
            for file, size, _ in files:
                if self._bytes <= target:
                    break
                try:
                    file.unlink()
                    self._bytes -= size
                except FileNotFoundError:  # another server sharing the cache took it
                    self._bytes -= size

    def _files(self) -> list[tuple[Path, int, float]]:
        found = []
        for file in self.folder.glob("*/*.jpg"):
            try:
                info = file.stat()
            except FileNotFoundError:
                continue
            found.append((file, info.st_size, info.st_mtime))
        return found


def video_frame(path: str, seconds: float, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """The frame of the video at ``path`` shown at ``seconds``: the very frame embedded for that moment
    (mmtools.video.decode.frame_at, which counts from the stream's start), as RGB."""
    from mmtools.errors import MissingDependencyError

    try:
        from mmtools.video.decode import frame_at

        return frame_at(path, seconds, max_pixels=max_pixels)
    except MissingDependencyError:
        raise ImageDecodeError("video frames need the optional PyAV package (pip install 'mmtools[video]')") \
            from None
    except FileNotFoundError:
        raise ImageDecodeError("no such file") from None
