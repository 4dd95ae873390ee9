"""Finding image files and decoding them safely into RGB.

Inputs may be files, folders (walked recursively), globs, or JSONL records with a ``path`` field. Decoding
applies the EXIF orientation, converts any Pillow mode to RGB (transparency over white), refuses images
above a pixel budget before decoding them, and decodes large JPEGs at reduced scale (Pillow's draft mode)
when the model will shrink them anyway.
"""

from __future__ import annotations

import glob
import os
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.records import STDIN, Record, read_records, record_id

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
                              ".ppm", ".pgm", ".jfif", ".avif", ".heic", ".heif"})
JSONL_EXTENSIONS = frozenset({".jsonl", ".ndjson", ".json"})
DEFAULT_MAX_PIXELS = 100_000_000  # about 10,000 × 10,000; larger images are refused, not decoded
GLOB_CHARACTERS = frozenset("*?[")
HEIF_EXTENSIONS = frozenset({".heic", ".heif"})


class ImageDecodeError(Exception):
    """One image could not be used; the message is the reason, phrased for the user."""


@dataclass
class ImageSource:
    """One image to embed: ``id`` is stable across runs, ``record`` holds fields to pass through.

    This is the image-source seam of the pipeline: an image file here; a frame of a video in
    ``mmtools.video.sources.VideoFrameSource``. Each kind says what its pixels' content key is (for the
    embedding cache) and decodes a group of its own sources at once (``decode_sources`` groups them)."""

    id: str
    path: str
    record: Record = field(default_factory=dict)

    @property
    def where(self) -> str:
        """How messages name it."""
        return self.path

    def content_key(self, sha256: str) -> str:
        """The embedding cache's key for these pixels, given the SHA-256 of the file at ``path``."""
        return sha256

    @classmethod
    def decode_group(cls, sources: list["ImageSource"], *, max_pixels: int, draft_size: int | None
                     ) -> Iterator[tuple["ImageSource", Any]]:
        """``(source, RGB image or ImageDecodeError)`` for each of ``sources`` (all of this kind)."""
        for source in sources:
            try:
                yield source, load_image(source.path, max_pixels=max_pixels, draft_size=draft_size)
            except ImageDecodeError as exc:
                yield source, exc


def decode_sources(sources: list[ImageSource], *, max_pixels: int = DEFAULT_MAX_PIXELS,
                   draft_size: int | None = None) -> list[tuple[ImageSource, Any]]:
    """``(source, RGB image or ImageDecodeError)`` for each source, in input order. Sources of one kind are
    decoded together by that kind (the frames of one video in one pass over it)."""
    kinds: dict[type, list[ImageSource]] = {}
    for source in sources:
        kinds.setdefault(type(source), []).append(source)
    results: dict[int, Any] = {}
    for kind, group in kinds.items():
        for source, result in kind.decode_group(group, max_pixels=max_pixels, draft_size=draft_size):
            results[id(source)] = result
    return [(source, results[id(source)]) for source in sources]


def discover_images(
    inputs: Iterable[str], *, root: str | None = None, hidden: bool = False,
    on_problem: ProblemHandler = raise_problem, extensions: frozenset[str] = IMAGE_EXTENSIONS,
) -> Iterator[ImageSource]:
    """Expand inputs into image sources, in a stable order (folders sorted, globs sorted).

    ``-`` and ``*.jsonl`` inputs are JSONL records with a ``path`` (relative paths resolve against ``root``,
    default the current directory). A folder yields the files with ``extensions`` below it (hidden ones
    only with ``hidden``; macOS ``._`` files never); a file named directly is tried whatever its extension.
    Each file gets one id however it was named (see ``canonical_path_id``).
    """
    for item in inputs:
        if item == STDIN or (Path(item).suffix.lower() in JSONL_EXTENSIONS and Path(item).is_file()):
            yield from _sources_from_records(read_records([item], on_problem), root, on_problem)
        elif os.path.isdir(item):
            yield from _sources(walk_images(item, hidden=hidden, extensions=extensions), root, on_problem)
        elif os.path.isfile(item):
            yield from _sources([item], root, on_problem)
        elif GLOB_CHARACTERS & set(item):
            matches = sorted(glob.glob(item, recursive=True))
            files = [m for m in matches if os.path.isfile(m)]
            if not files:
                on_problem(Problem(item, "no files match this pattern"))
            yield from _sources(files, root, on_problem)
        elif os.path.lexists(item):
            on_problem(Problem(item, "not a regular file or folder (a broken link?)"))
        else:
            on_problem(Problem(item, "no such file or folder"))


def walk_images(folder: str, hidden: bool = False, extensions: frozenset[str] = IMAGE_EXTENSIONS
                ) -> Iterator[str]:
    """Image files (files with ``extensions``) below ``folder``, sorted. Hidden files and folders (.git, .thumbnails...) are skipped unless
    ``hidden``; macOS ``._`` resource files always. Linked folders are followed, each real folder once (so
    a link loop ends)."""
    visited: set[tuple[int, int]] = set()
    for current, dirs, files in os.walk(folder, followlinks=True):
        try:
            stat = os.stat(current)
        except OSError:
            dirs[:] = []
            continue
        if (stat.st_dev, stat.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if hidden or not d.startswith("."))
        for name in sorted(files):
            if name.startswith("._") or (name.startswith(".") and not hidden):
                continue
            if Path(name).suffix.lower() in extensions:
                yield os.path.join(current, name)


def canonical_path_id(path: str, root: str | None = None) -> str:
    """The one id of a file however its path was typed: ``photos/a.jpg``, ``./photos/a.jpg`` and the absolute
    path all give the absolute path, in Unicode NFC (macOS writes names in NFD); relative to ``root`` when
    the file is inside it, so an index can move with its folder. Links are not resolved."""
    absolute = os.path.abspath(path)
    if root is not None:
        relative = os.path.relpath(absolute, os.path.abspath(root))
        if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
            absolute = relative
    return unicodedata.normalize("NFC", absolute)


def printable_path(path: str) -> str:
    """A file name that is not valid UTF-8 (Python keeps its bytes as surrogates), made printable."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _sources(paths: Iterable[str], root: str | None, on_problem: ProblemHandler) -> Iterator[ImageSource]:
    for path in paths:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            on_problem(Problem(printable_path(path), "file name is not valid UTF-8, skipped (rename it, e.g. "
                                                     "with convmv -f latin1 -t utf8)"))
            continue
        item_id = canonical_path_id(path, root)
        yield ImageSource(id=item_id, path=path, record={"path": item_id if root is not None else path})


def _sources_from_records(records: Iterable[Record], root: str | None,
                          on_problem: ProblemHandler) -> Iterator[ImageSource]:
    for number, record in enumerate(records, 1):
        path = record.get("path")
        if not isinstance(path, str) or not path:
            on_problem(Problem(record_id(record, f"record {number}"), "record has no 'path' field, skipped"))
            continue
        resolved = path if os.path.isabs(path) or root is None else os.path.join(root, path)
        yield ImageSource(id=record_id(record, canonical_path_id(resolved, root)), path=resolved, record=record)


# --------------------------------------------------------------------------------------------- decoding


def stat_image_file(path: str) -> os.stat_result:
    """``os.stat(path)``, or ImageDecodeError with a reason phrased for the user."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageDecodeError("broken symbolic link (what it points to is gone)") from None
        raise ImageDecodeError("no such file") from None
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except OSError as exc:
        raise ImageDecodeError(f"cannot read it ({exc.strerror})") from None


# --------------------------------------------------------------------------------------------- EXIF

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATE_TIME, _DATE_TIME_ORIGINAL, _OFFSET_TIME, _OFFSET_TIME_ORIGINAL = 0x0132, 0x9003, 0x9010, 0x9011
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4


def photo_fields(path: str) -> Record:
    """What a photo's EXIF says about when and where it was taken: ``taken_at`` (ISO 8601, from
    DateTimeOriginal, else DateTime; with the UTC offset only when the photo records one, never invented)
    and ``gps`` (``{"lat", "lon"}`` in decimal degrees, south and west negative). Only the file's header
    is read; a field the photo lacks, or holds malformed, is left out; anything but an image file gives {}."""
    from PIL import Image

    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return {}
    try:
        if suffix in HEIF_EXTENSIONS:
            _register_heif()  # iPhone photos, where pillow-heif is installed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                exif = image.getexif()
                details = exif.get_ifd(_EXIF_IFD)
                gps = exif.get_ifd(_GPS_IFD)
    except Exception:  # noqa: BLE001 - an unreadable header means no EXIF fields; decoding reports the file
        return {}
    fields: Record = {}
    taken = (_exif_time(details.get(_DATE_TIME_ORIGINAL), details.get(_OFFSET_TIME_ORIGINAL))
             or _exif_time(exif.get(_DATE_TIME), details.get(_OFFSET_TIME)))
    if taken:
        fields["taken_at"] = taken
    lat, lon = _degrees(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), 90), _degrees(gps.get(_GPS_LON),
                                                                                   gps.get(_GPS_LON_REF), 180)
    if lat is not None and lon is not None and (lat, lon) != (0.0, 0.0):  # 0, 0: a camera without a fix
        fields["gps"] = {"lat": lat, "lon": lon}
    return fields


def _exif_time(value: Any, offset: Any) -> str | None:
    """EXIF's ``2024:05:01 10:20:30`` as ``2024-05-01T10:20:30`` (``+07:00`` added only if recorded)."""
    import re
    from datetime import datetime

    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    try:
        when = datetime.strptime(value.strip().rstrip("\x00")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None  # blank ("    :  :  ") or zero ("0000:00:00 00:00:00") dates mean none
    text = when.isoformat()
    if isinstance(offset, str) and re.fullmatch(r"[+-]\d{2}:\d{2}", offset.strip().rstrip("\x00")):
        text += offset.strip().rstrip("\x00")
    return text


def _degrees(value: Any, ref: Any, limit: float) -> float | None:
    """GPS degrees, minutes, seconds (rationals) and N/S/E/W as signed decimal degrees."""
    import math

    try:
        parts = [float(part) for part in value]
        degrees = parts[0] + (parts[1] / 60 if len(parts) > 1 else 0) + (parts[2] / 3600 if len(parts) > 2 else 0)
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    if isinstance(ref, str) and ref.strip().upper()[:1] in ("S", "W"):
        degrees = -degrees
    if not math.isfinite(degrees) or abs(degrees) > limit:
        return None
    return round(degrees, 7)


def load_image(path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None) -> Any:
    """Open ``path`` as an RGB PIL image; raises ImageDecodeError with a user-facing reason."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        if stat_image_file(path).st_size == 0:
            raise ImageDecodeError("file is empty (0 bytes)")
        if Path(path).suffix.lower() in HEIF_EXTENSIONS:
            _register_heif()
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageDecodeError(_too_large(width, height, max_pixels))
                if draft_size and image.format == "JPEG":
                    # Decode at 1/2, 1/4 or 1/8 scale when the result still covers the model's input size.
                    image.draft("RGB", (draft_size, draft_size))
                image.load()
                image = ImageOps.exif_transpose(image)
                return to_rgb(image)
    except ImageDecodeError:
        raise
    except FileNotFoundError:  # removed since it was looked at
        raise ImageDecodeError("no such file") from None
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except IsADirectoryError:
        raise ImageDecodeError("is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image Pillow can read (wrong extension, or an unsupported format?)") \
            from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(f"image is too large to decode safely (over {max_pixels:,} pixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"image is corrupt or truncated ({exc})") from None
    except MemoryError:
        raise ImageDecodeError("not enough memory to decode this image") from None


def _register_heif() -> None:
    """HEIC/HEIF (iPhone photos) decode through the optional pillow-heif package."""
    try:
        import pillow_heif
    except ImportError:
        raise ImageDecodeError("HEIC/HEIF images need the optional pillow-heif package "
                               "(pip install 'mmtools[heic]')") from None
    pillow_heif.register_heif_opener()


def to_rgb(image: Any) -> Any:
    """Any Pillow mode to RGB; transparent areas become white rather than black."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return _high_depth_to_rgb(image)
    return image.convert("RGB")


def _high_depth_to_rgb(image: Any) -> Any:
    """16-bit and float greyscale: stretch to 8 bits (a plain convert would clip most of the range)."""
    import numpy as np
    from PIL import Image

    array = np.asarray(image, dtype=np.float32)
    low, high = float(array.min()), float(array.max())
    scaled = np.zeros_like(array) if high <= low else (array - low) * (255.0 / (high - low))
    return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")


def _too_large(width: int, height: int, limit: int) -> str:
    return f"image is {width}×{height} pixels, over the limit of {limit:,} (raise it with --max-pixels)"
