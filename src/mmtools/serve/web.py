"""The web page at ``/`` and what it needs beyond the JSON API: pictures of indexed records, "more like this".

- ``GET /``: the page (``static/index.html``; plain HTML, CSS and JavaScript, nothing fetched from elsewhere).
- ``GET /thumb/{id}`` and ``GET /image/{id}``: a thumbnail, and the picture itself, of a record of a served
  index (``?index=`` names which; by default the first that holds the id). Only ids found in a served index
  are answered, and the file is the one its record names, so a request can never name a file. Thumbnails and
  converted pictures come from a bounded cache on disk (``mmtools.serve.thumbnails``); answers carry an ETag
  and ``Cache-Control``, and a missing file is a 404.
- ``GET /video/{id}``: the source video of a video moment (a record of ``mmtools keyframes``), sent with HTTP
  Range support so a ``<video>`` element can seek to the moment; like pictures, only for records of a served
  index. ``POST /video-url`` gives the URL the page sets as the player's source: with a token, a signed one
  (mmtools.serve.auth.UrlSigner), since a ``<video>`` element cannot send the header.
- ``POST /similar``: search with the picture of a record (by id), for the page's "more like this".
"""


import os
from pathlib import Path
from typing import Any, Iterator, Optional

from mmtools.paths import cache_dir
from mmtools.serve.security import looks_like_image, served_file
from mmtools.serve.thumbnails import THUMBNAIL_SIZE, VIEW_SIZE, Picture, RenditionCache

STATIC = Path(__file__).with_name("static")
MAX_ID_CHARS = 4096
PICTURE_CACHE_CONTROL = "private, max-age=600"
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".ogv": "video/ogg", ".avi": "video/x-msvideo",
               ".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".ts": "video/mp2t"}
# The page loads nothing from elsewhere, and nothing may frame it.
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def record_picture(record: dict[str, Any], item_id: str, index_path: Path,
                   root: str | None = None) -> Picture | None:
    """The picture a stored record stands for: its ``path`` (absolute, else against the index's root, its
    folder or the server's), else an id that is a file's path; a video record's frame at its ``time``. Only
    a file the server may send (``security.served_file``: no link leading out of the index's root or folder)
    counts."""
    candidates = []
    for name in (record.get("path"), item_id):
        if not isinstance(name, str) or not name or "\0" in name:
            continue
        if os.path.isabs(name):
            candidates.append(name)
        else:
            candidates += [os.path.join(root, name)] if root else []
            candidates += [str(Path(index_path).parent / name), os.path.abspath(name)]
    moment = record.get("time")
    moment = float(moment) if isinstance(moment, (int, float)) and not isinstance(moment, bool) else None
    roots = [root] if root else [str(Path(index_path).parent)]  # a rooted index's files are inside its root
    for candidate in candidates:
        if os.path.lexists(candidate):
            allowed = served_file(candidate, roots)
            if allowed is not None:
                return Picture(allowed, moment)
    return None


def add_web_page(app: Any, engine: Any, *, max_pixels: int | None = None, token_required: bool = False,
                 cache_folder: str | os.PathLike[str] | None = None, signer: Any = None) -> None:
    """Add the page, its assets and the picture routes to the FastAPI ``app`` over ``engine``; ``signer``
    (mmtools.serve.auth.UrlSigner, with a token) signs the videos' URLs."""
    from fastapi import Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, Field, ValidationError
    from starlette.concurrency import run_in_threadpool

    from mmtools.errors import MmtoolsError
    from mmtools.images import DEFAULT_MAX_PIXELS, ImageDecodeError
    from mmtools.index.filters import FilterError
    from mmtools.serve.http import MAX_K

    renditions = RenditionCache(Path(cache_folder) if cache_folder else cache_dir() / "thumbnails",
                                max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    page = (STATIC / "index.html").read_text(encoding="utf-8").replace(
        "{{auth}}", "token" if token_required else "none")

    class NotFound(Exception):
        def __init__(self, message: str, hint: str | None = None):
            self.message, self.hint = message, hint

    class SimilarBody(BaseModel):
        id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="A record of a served index.")
        index: Optional[str] = Field(None, description="The index that holds it [default: the first that does].")
        k: int = Field(10, ge=1, le=MAX_K)
        min_score: Optional[float] = None
        where: list[str] = Field(default_factory=list, max_length=32,
                                 description="Only records meeting these conditions, as for /search.")

    def problem(status: int, message: str, hint: str | None = None) -> Any:
        return JSONResponse({"error": message, "hint": hint}, status_code=status)

    def searched(index: str | None) -> Iterator[Path]:
        if index:
            yield engine.named_index(index)
        else:
            yield from dict.fromkeys(engine.index_names.values())

    def find(item_id: str, index: str | None) -> tuple[Path, dict[str, Any], Picture]:
        """The served index holding ``item_id``, its record and its picture (NotFound otherwise)."""
        if len(item_id) > MAX_ID_CHARS:
            raise NotFound(f"id is over {MAX_ID_CHARS} characters")
        try:
            for path in searched(index):
                with engine.reader(path) as reader:
                    record = reader.get(item_id)
                    root = getattr(reader, "root", None)
                if record is not None:
                    picture = record_picture(record, item_id, path, root)
                    if picture is None:
                        raise NotFound(f"the file of {item_id} is missing (or not a file this server sends)",
                                       "it was moved or deleted since it was indexed, or is a link leading out "
                                       "of the indexed folder; index it again")
                    return path, record, picture
        except LookupError as exc:
            raise NotFound(str(exc.args[0])) from None
        raise NotFound(f"no record {item_id!r} in the served indexes", "ids come from /search hits")

    def picture_answer(request: Request, item_id: str, index: str | None, size: int) -> Any:
        try:
            _, _, picture = find(item_id, index)
            media_type = picture.browser_type() if size == VIEW_SIZE else None
            if media_type is not None and not looks_like_image(picture.path):
                return problem(422, f"{item_id}: the file is not an image", "index it again")
            if media_type is not None:  # the file as it is: no need to decode it
                import hashlib

                etag = f'"{hashlib.sha256(picture.version().encode("utf-8", "surrogateescape")).hexdigest()[:32]}"'
                path = Path(picture.path)
            else:
                rendition = renditions.get(picture, size)
                etag, path, media_type = rendition.etag, rendition.path, "image/jpeg"
        except NotFound as exc:
            return problem(404, exc.message, exc.hint)
        except ImageDecodeError as exc:
            status = 404 if "no such file" in str(exc) else 422
            return problem(status, f"{item_id}: {exc}")
        headers = {"etag": etag, "cache-control": PICTURE_CACHE_CONTROL, "x-content-type-options": "nosniff"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return FileResponse(path, media_type=media_type, headers=headers)

    @app.get("/", include_in_schema=False)
    def web_page() -> Any:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Any:
        return FileResponse(STATIC / "icon.svg", media_type="image/svg+xml",
                            headers={"cache-control": "public, max-age=86400"})

    @app.get("/thumb/{item_id:path}", summary="A thumbnail (JPEG) of a record of a served index")
    def thumbnail(request: Request, item_id: str, index: Optional[str] = None) -> Any:
        return picture_answer(request, item_id, index, THUMBNAIL_SIZE)

    @app.get("/image/{item_id:path}", summary="The picture of a record of a served index")
    def image(request: Request, item_id: str, index: Optional[str] = None) -> Any:
        return picture_answer(request, item_id, index, VIEW_SIZE)

    class VideoBody(BaseModel):
        id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="A video moment of a served index.")
        index: Optional[str] = Field(None, description="The index that holds it [default: the first that does].")

    def video_of(item_id: str, index: str | None) -> tuple[Picture, dict[str, Any]]:
        _, record, picture = find(item_id, index)
        if picture.time is None:
            raise NotFound(f"{item_id} is a picture, not a moment of a video", "GET /image/ID shows it")
        return picture, record

    @app.get("/video/{item_id:path}", summary="The source video of a video moment of a served index "
                                               "(HTTP Range requests answered with 206)")
    def video(item_id: str, index: Optional[str] = None, expires: Optional[int] = None,
              sig: Optional[str] = None) -> Any:
        try:
            picture, _ = video_of(item_id, index)
        except NotFound as exc:
            return problem(404, exc.message, exc.hint)
        media_type = VIDEO_TYPES.get(Path(picture.path).suffix.lower(), "application/octet-stream")
        return FileResponse(picture.path, media_type=media_type, headers={
            "cache-control": PICTURE_CACHE_CONTROL, "x-content-type-options": "nosniff"})

    @app.post("/video-url", summary="The URL that plays a video moment of a served index, and its moment")
    async def video_url(request: Request) -> Any:
        from urllib.parse import quote, urlencode

        try:
            params = VideoBody.model_validate(await request.json())
        except ValueError:
            return problem(422, "send {\"id\": ...} as application/json", "ids come from /search hits")
        try:
            picture, record = await run_in_threadpool(video_of, params.id, params.index)
        except NotFound as exc:
            return problem(404, exc.message, exc.hint)
        path = f"/video/{params.id}"
        if signer is not None:  # the signature covers the index too
            query = [signer.sign(path, index=params.index)]
        else:
            query = [urlencode({"index": params.index})] if params.index else []
        url = quote(path, safe="/") + ("?" + "&".join(query) if query else "")
        return {"url": url, "time": picture.time, "start": record.get("shot_start", record.get("start")),
                "end": record.get("shot_end", record.get("end"))}  # a shot's bounds, or a spoken segment's

    @app.post("/similar", summary="Search with the picture of a record of a served index (by its id)")
    async def similar(request: Request) -> Any:
        try:
            params = SimilarBody.model_validate(await request.json())
        except ValueError as exc:  # bad JSON, or a ValidationError (a ValueError too)
            if isinstance(exc, ValidationError):
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first.get("loc", ())) or "body"
                return problem(422, f"{where}: {first.get('msg')}")
            return problem(400, "request body is not valid JSON", 'send {"id": ...} as application/json')
        try:
            return {"hits": await run_in_threadpool(more_like, params)}
        except NotFound as exc:
            return problem(404, exc.message, exc.hint)
        except ImageDecodeError as exc:
            return problem(422, f"{params.id}: {exc}")
        except FilterError as exc:
            return problem(400, f"where: {exc}", 'e.g. "where": ["tags=biển"]')
        except MmtoolsError as exc:  # the index's model cannot be loaded, or no longer matches
            return problem(503, exc.message, exc.hint)

    def more_like(params: SimilarBody) -> list[dict[str, Any]]:
        from mmtools.serve.searching import similar

        path, _, picture = find(params.id, params.index)
        return similar(engine, path, params.id, picture, k=params.k, min_score=params.min_score,
                       where=params.where, max_pixels=renditions.max_pixels)
