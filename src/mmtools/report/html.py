"""An HTML page of search hits: one section per query, the images in rank order with rank and score, each
linked by path (relative to the page where possible, so the page and the photos can move together); a
frame of a video is a player that starts at that moment (``video.mp4#t=83.2``), its frame the poster.
Standard library only; every text is HTML-escaped; written atomically."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

from mmtools.errors import Problem, ProblemHandler
from mmtools.report.hits import Hit, HitRow

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #141414; }
h1 { font-size: 1.2rem; } h2 { font-size: 1rem; margin: 1.5rem 0 .5rem; }
.row { display: flex; flex-wrap: wrap; gap: .5rem; }
figure { margin: 0; width: 160px; }
figure img, figure video { width: 160px; height: 160px; object-fit: contain; background: #e1e1e1; display: block; }
figcaption { font-size: .8rem; overflow-wrap: anywhere; }
.score { color: #5a5a5a; }
.missing { width: 160px; height: 160px; background: #bebebe; display: flex; align-items: center;
           justify-content: center; font-size: .75rem; }
"""


def image_href(image_path: str, page: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None) -> str:
    """The link from ``page`` to ``image_path`` (relative to ``base_dir``, default the current directory):
    a relative URL where one exists, else a file:// URL. Percent-encoded, so spaces and # are safe."""
    source = Path(os.path.abspath(Path(base_dir or ".") / image_path))
    page_dir = Path(os.path.abspath(page)).parent
    try:
        relative = os.path.relpath(source, page_dir)
    except ValueError:  # another drive (Windows): no relative path exists
        return source.as_uri()
    return quote(Path(relative).as_posix(), safe="/")


def render_html(rows: Sequence[HitRow], page: str | os.PathLike[str], *, title: str = "mmtools search",
                base_dir: str | os.PathLike[str] | None = None, frames: dict[tuple[str, float], Any] | None = None
                ) -> str:
    """The page. ``frames``: the pictures of hits on videos, by (path, time) (a JPEG data URL each, or
    None where the frame could not be decoded); such a hit is a player that starts at its moment."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="vi">', "<head>", '<meta charset="utf-8">',
             f"<title>{esc(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
             f"<h1>{esc(title)}</h1>"]
    for row in rows:
        parts.append(f'<section class="query" data-query-id="{esc(row.query_id)}">')
        parts.append(f"<h2>{esc(row.query)}</h2>")
        parts.append('<div class="row">')
        parts.extend(_figure(hit, page, base_dir, frames or {}) for hit in row.hits)
        parts.append("</div>")
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _figure(hit: Hit, page, base_dir, frames: dict) -> str:
    esc = html.escape
    score = "" if hit.score is None else f' <span class="score">{esc(hit.score_text)}</span>'
    caption = f"<figcaption>#{hit.rank}{score}<br>{esc(hit.path or hit.id)}</figcaption>"
    if hit.path is None:
        return f'<figure><div class="missing">{esc(hit.id)}</div>{caption}</figure>'
    if hit.time is not None:
        return _moment_figure(hit, page, base_dir, frames.get((hit.path, hit.time)), score)
    href = esc(image_href(hit.path, page, base_dir))
    return (f'<figure><a href="{href}"><img src="{href}" loading="lazy" alt="{esc(hit.path)}"></a>'
            f"{caption}</figure>")


def write_html(path: str | os.PathLike[str], rows: Sequence[HitRow], *, title: str = "mmtools search",
               base_dir: str | os.PathLike[str] | None = None, on_problem: ProblemHandler | None = None) -> None:
    from mmtools.records import atomic_path

    frames = frame_posters(rows, base_dir, on_problem=on_problem)
    text = render_html(rows, path, title=title, base_dir=base_dir, frames=frames)
    with atomic_path(path, suffix=".html") as tmp:
        tmp.write_text(text, encoding="utf-8")


def _moment_figure(hit: Hit, page, base_dir, poster: str | None, score: str) -> str:
    """A hit on a video: its frame as the poster of a player that starts at the moment (``#t=``, the media
    fragment every browser plays from), and a link to the moment."""
    from mmtools.video.decode import format_clock
    from mmtools.video.keyframes import format_seconds

    esc = html.escape
    href = esc(f"{image_href(hit.path, page, base_dir)}#t={format_seconds(hit.time)}")
    shown = poster if poster is not None else ""
    label = f"{hit.path} {format_clock(hit.time)}"
    said = f"<br><q>{esc(hit.said)}</q>" if hit.said else ""  # what is said there, for a hit on speech
    return (f'<figure class="moment"><video controls preload="none" src="{href}" poster="{esc(shown)}">'
            f'</video><figcaption>#{hit.rank}{score}<br><a href="{href}">{esc(label)}</a>{said}'
            f'</figcaption></figure>')


def frame_posters(rows: Sequence[HitRow], base_dir: str | os.PathLike[str] | None = None, *, side: int = 320,
                  on_problem: ProblemHandler | None = None) -> dict[tuple[str, float], str | None]:
    """Each hit on a video's frame as a small JPEG data URL (decoded from the video, each video once)."""
    import base64
    import io

    moments = [(hit.path, hit.time) for row in rows for hit in row.hits
               if hit.path is not None and hit.time is not None]
    if not moments:
        return {}
    from mmtools.video.moments import frame_images

    posters: dict[tuple[str, float], str | None] = {}
    for key, image in frame_images(moments, base_dir=base_dir, short_side=side).items():
        if isinstance(image, Exception):
            posters[key] = None
            if on_problem is not None:
                on_problem(Problem(f"{key[0]} at {key[1]} s", f"{image}; shown without its frame"))
            continue
        image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        posters[key] = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return posters
