"""A contact sheet of search hits: one row per query (its text above), thumbnails in rank order, each
captioned with its rank and score (and its moment, for a frame of a video: the frame is decoded from it). Drawn with Pillow; written atomically as PNG."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mmtools.errors import Problem, ProblemHandler
from mmtools.report.hits import HitRow
from mmtools.video.decode import format_clock

BACKGROUND = (250, 250, 250)
CELL_BACKGROUND = (225, 225, 225)
MISSING = (190, 190, 190)
INK = (20, 20, 20)
SCORE_INK = (90, 90, 90)
# Fonts that cover Vietnamese (precomposed letters with two diacritics); Pillow's own font is the fallback.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


@dataclass(frozen=True)
class MontageLayout:
    """Where everything goes; the tests check a written sheet against it."""

    rows: int
    columns: int
    thumb: int
    gap: int = 8
    heading: int = 26  # the query text above each row
    caption: int = 22  # rank and score under each thumbnail

    @property
    def row_height(self) -> int:
        return self.heading + self.thumb + self.caption + self.gap

    @property
    def size(self) -> tuple[int, int]:
        return (self.gap + self.columns * (self.thumb + self.gap), self.gap + self.rows * self.row_height)

    def thumb_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the square that holds the thumbnail of hit ``column`` of ``row``."""
        left = self.gap + column * (self.thumb + self.gap)
        top = self.gap + row * self.row_height + self.heading
        return left, top, left + self.thumb, top + self.thumb


def montage_layout(rows: Sequence[HitRow], thumb: int = 160) -> MontageLayout:
    return MontageLayout(rows=len(rows), columns=max([len(r.hits) for r in rows] + [1]), thumb=thumb)


def write_montage(path: str | os.PathLike[str], rows: Sequence[HitRow], *, thumb: int = 160,
                  base_dir: str | os.PathLike[str] | None = None,
                  on_problem: ProblemHandler | None = None) -> MontageLayout:
    """Draw ``rows`` as a contact sheet at ``path`` (PNG). Relative hit paths are opened against ``base_dir``
    (default: the current directory). An image that cannot be opened is drawn as a grey cell and reported
    through ``on_problem``; the sheet is still written."""
    from PIL import Image, ImageDraw

    from mmtools.images import ImageDecodeError, load_image
    from mmtools.records import atomic_path

    layout = montage_layout(rows, thumb)
    frames = _video_frames(rows, base_dir, thumb)
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    heading_font, caption_font = _font(15), _font(13)
    for r, row in enumerate(rows):
        top = layout.gap + r * layout.row_height
        draw.text((layout.gap, top + 3), _fit(draw, f"{row.query}", heading_font, layout.size[0] - 2 * layout.gap),
                  fill=INK, font=heading_font)
        for c, hit in enumerate(row.hits):
            box = layout.thumb_box(r, c)
            draw.rectangle(box, fill=CELL_BACKGROUND)
            image = None
            if hit.path is not None:
                source = Path(base_dir or ".") / hit.path
                try:
                    if hit.time is None:
                        image = load_image(str(source), draft_size=thumb)
                    elif isinstance(image := frames[(hit.path, hit.time)], ImageDecodeError):
                        raise image
                except ImageDecodeError as exc:
                    image = None
                    if on_problem is not None:
                        on_problem(Problem(hit.id if hit.time is not None else hit.path,
                                           f"{exc}; drawn as a grey cell in the montage"))
            if image is None:
                draw.rectangle(box, fill=MISSING)
                draw.text((box[0] + 6, box[1] + 6), _fit(draw, hit.path or hit.id, caption_font, thumb - 12),
                          fill=INK, font=caption_font)
            else:
                image.thumbnail((thumb, thumb))
                sheet.paste(image, (box[0] + (thumb - image.width) // 2, box[1] + (thumb - image.height) // 2))
            score = "" if hit.score is None else f"  {hit.score_text}"
            if hit.time is not None:
                score += f"  {format_clock(hit.time)}"
            draw.text((box[0], box[3] + 4), f"#{hit.rank}", fill=INK, font=caption_font)
            rank_width = draw.textlength(f"#{hit.rank}", font=caption_font)
            draw.text((box[0] + rank_width, box[3] + 4), score, fill=SCORE_INK, font=caption_font)
    with atomic_path(path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return layout


def _video_frames(rows: Sequence[HitRow], base_dir: Any, thumb: int) -> dict[tuple[str, float], Any]:
    """The frames of the hits on videos, each video decoded once."""
    moments = [(hit.path, hit.time) for row in rows for hit in row.hits
               if hit.path is not None and hit.time is not None]
    if not moments:
        return {}
    from mmtools.video.moments import frame_images

    return frame_images(moments, base_dir=base_dir, short_side=thumb)


def _font(size: int) -> Any:
    from PIL import ImageFont

    for candidate in FONT_CANDIDATES:
        if os.path.exists(candidate):
            try:
                return ImageFont.truetype(candidate, size)
            except OSError:
                continue
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    """``text`` cut with an ellipsis so it fits in ``width`` pixels."""
    text = " ".join(text.split())
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
