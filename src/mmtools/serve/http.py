"""The HTTP API for web apps (FastAPI): /health, /search, /embed, /tag, /api/extract-features, and the web
page at / (mmtools.serve.web).

Bodies are JSON or multipart forms (for uploaded images). Answers carry the same records the CLI writes:
``/search`` the hit records of ``mmtools search``, ``/embed`` the embedding records of ``embed-texts`` and
``embed-images``; ``/tag`` and ``/api/extract-features`` the tags of ``mmtools tag``. Every error, unknown
routes and wrong methods included, is ``{"error": ..., "hint": ...}`` with a 4xx (5xx for the server's own
failures); bodies above ``max_body_bytes`` are refused with 413 before they are read whole; uploaded images
are decoded under the engine's pixel limit (Engine.picture, for every route). Work runs in a thread pool, so
a slow client (or a slow upload) never holds up the event loop; concurrent requests share forward passes
through the engine. The OpenAPI page at /docs has its scripts from the fastapi-offline package, not a CDN.
"""


import os
import tempfile
from contextlib import contextmanager, nullcontext
from typing import Any, Iterator, Optional

from mmtools.errors import IndexFileError, MissingDependencyError, ModelError, UsageError

INSTALL_HINT = "install the server extra: pip install 'mmtools[serve]' (FastAPI and uvicorn)"
DEFAULT_MAX_BODY = 20 * 1024 * 1024
MAX_LABELS = 1000
MAX_TEXTS = 1024
MAX_K = 1000
MAX_CONDITIONS = 32
MAX_INDEXES = 16
ROUTES_HINT = ("the API: GET /health; POST /search, /embed, /tag, /api/extract-features (described at /docs "
               "and /openapi.json)")


def require_fastapi() -> None:
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401  (the /docs page's scripts, served locally)
        import python_multipart  # noqa: F401  (for uploads)
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"mmtools serve --http needs {exc.name}, which is not installed",
                                     hint=INSTALL_HINT) from None


class RequestTooLarge(Exception):
    pass


class HTTPProblem(Exception):
    """An answer with ``status`` and ``{"error": message, "hint": hint}``; any route module may raise it."""

    def __init__(self, status: int, message: str, hint: str | None = None):
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


_TOO_LARGE_HINT = "send a smaller image, or fewer texts (the server's --max-body sets the limit)"


class BodyLimit:
    """ASGI middleware: refuses a body over ``limit`` bytes, by its Content-Length or while it streams in."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _send_json(send, 413, _error_body(f"request body is over {self.limit:,} bytes",
                                                    _TOO_LARGE_HINT))
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise RequestTooLarge()
            return message

        await self.app(scope, limited, send)


async def _send_json(send: Any, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    import orjson

    payload = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


def _error_body(message: str, hint: str | None = None) -> dict:
    return {"error": message, "hint": hint}


def create_app(engine: Any, *, max_body_bytes: int = DEFAULT_MAX_BODY, token: Optional[str] = None,
               host: Optional[str] = None) -> Any:
    """The ASGI application over ``engine`` (a mmtools.serve.engine.Engine): the API's routes and the web page,
    the error answers for all of them, and the body limit around everything; with ``token``, requests need
    it (see mmtools.serve.auth); without one, only requests addressed to this machine's own names (and
    ``host``, the name it is bound to) are answered (see mmtools.serve.security)."""
    require_fastapi()
    from fastapi_offline import FastAPIOffline

    from mmtools import __version__

    app = FastAPIOffline(title="mmtools", version=__version__, default_response_class=_orjson_response(),
                         redoc_url=None, favicon_url="data:,",
                         description="Image–text search, embedding and tagging over warm models and indexes. "
                                     "Bodies: JSON, or multipart/form-data with an 'image' file and the same "
                                     "fields. Errors: {\"error\", \"hint\"}.")
    _install_error_answers(app, max_body_bytes)
    app.include_router(api_router(engine))
    from mmtools.serve.web import add_web_page

    from mmtools.serve.auth import TokenAuth, UrlSigner

    signer = UrlSigner(token) if token else None
    add_web_page(app, engine, max_pixels=engine.max_pixels, token_required=bool(token), signer=signer)
    from mmtools.serve.security import WILDCARD_HOSTS, HostCheck, PlainErrorsAsJson, own_names

    guarded = PlainErrorsAsJson(app)
    if token:
        return BodyLimit(TokenAuth(guarded, token, signer), max_body_bytes)
    if host in WILDCARD_HOSTS:  # --insecure on every address: any name may reach it, as its user chose
        return BodyLimit(guarded, max_body_bytes)
    return HostCheck(BodyLimit(guarded, max_body_bytes), own_names(host))


def _orjson_response() -> Any:
    from fastapi.responses import JSONResponse

    class ORJSON(JSONResponse):  # numpy-aware and fast; FastAPI's ORJSONResponse is deprecated
        def render(self, content: Any) -> bytes:
            import orjson

            return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)

    return ORJSON


def _install_error_answers(app: Any, max_body_bytes: int) -> None:
    """Every error in the documented shape with a hint: ours, Starlette's (unknown route, wrong method),
    FastAPI's validation errors, and the server's own failures."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    answer = _orjson_response()
    from mmtools.serve.security import install_error_answers

    install_error_answers(app, answer)

    @app.exception_handler(HTTPProblem)
    async def _problem(_request: Request, exc: HTTPProblem):
        return answer(_error_body(exc.message, exc.hint), status_code=exc.status)

    @app.exception_handler(RequestTooLarge)
    async def _too_large(_request: Request, _exc: RequestTooLarge):
        return answer(_error_body(f"request body is over {max_body_bytes:,} bytes", _TOO_LARGE_HINT),
                      status_code=413)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            body = _error_body(f"no such route: {where}", ROUTES_HINT)
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow") or "another method"
            body = _error_body(f"{request.url.path} does not take {request.method}",
                               f"use {allowed} {request.url.path}; {ROUTES_HINT}")
        else:
            body = _error_body(f"{where}: {exc.detail}", ROUTES_HINT)
        return answer(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "request"
        return answer(_error_body(f"{where}: {first.get('msg', 'invalid')}", "the fields are described at /docs"),
                      status_code=422)

    @app.exception_handler(Exception)
    async def _failed(_request: Request, exc: Exception):
        return answer(_error_body(f"internal error in the server: {type(exc).__name__}: {exc}",
                                  "see the server's log"), status_code=500)


def api_router(engine: Any) -> Any:
    """The API's routes over ``engine``."""
    from fastapi import APIRouter, Request
    from pydantic import BaseModel, Field, ValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile

    from mmtools.images import ImageDecodeError
    from mmtools.index.filters import FilterError
    from mmtools.ranking import MODES
    from mmtools.serve.engine import RETRIEVAL, TAGGER

    fields_hint = "the fields are described at /docs"

    class SearchBody(BaseModel):
        query: Optional[str] = Field(None, description="Text to search with (or upload an 'image').")
        k: int = Field(10, ge=1, le=MAX_K, description="Hits (or, with 'then', videos) to return.")
        index: Optional[str] = Field(None, description="Name of a served index [default: the first].")
        indexes: list[str] = Field(default_factory=list, max_length=MAX_INDEXES,
                                   description="Several served indexes, each queried with its own model, their "
                                               "rankings fused (hits then carry 'fusion' and 'scores').")
        min_score: Optional[float] = Field(None, description="Leave out vector hits less similar than this "
                                                             "(cosine similarity; in hybrid mode and over several "
                                                             "indexes, before fusion; keyword mode refuses it).")
        mode: Optional[str] = Field(
            None, pattern="^(" + "|".join(MODES) + ")$",
            description="vector (the model), keyword (the stored texts, BM25) or hybrid (both, fused by "
                        "reciprocal rank) [default: hybrid when the index holds texts, else vector]; an "
                        "image is searched by vector.")
        where: list[str] = Field(default_factory=list, max_length=MAX_CONDITIONS,
                                 description="Only records whose stored field meets each condition, as for "
                                             "`mmtools search --where`: FIELD=VALUE, !=, <, <=, >, >=, ~ "
                                             "(contains); a form field may repeat.")
        restore: bool = Field(True, description="Put the accents back into a query typed without them before "
                                                "encoding it (reported as query_restored in the hits).")
        then: list[str] = Field(default_factory=list, max_length=MAX_CONDITIONS,
                                description="Events in order: the next steps after the query, as for "
                                            "`mmtools search --then` (results are videos).")
        within: float = Field(30.0, gt=0, description="With 'then': first to last step inside this many seconds.")
        weights: Optional[list[float]] = Field(None, max_length=MAX_INDEXES,
                                               description="Weights for weighted score fusion: one per index, or "
                                                           "two (vector, keyword) for one index in hybrid mode.")

    class EmbedBody(BaseModel):
        texts: list[str] = Field(default_factory=list, max_length=MAX_TEXTS, description="Texts to embed.")
        model: Optional[str] = Field(None, description="A served model [default: the first].")
        embedding_format: str = Field("base64", pattern="^(base64|list)$")

    class TagBody(BaseModel):
        labels: Optional[list[str]] = Field(None, max_length=MAX_LABELS,
                                            description="Zero-shot: candidate labels (a form field may repeat or "
                                                        "hold them comma-separated). Leave out for a trained "
                                                        "tagger, which has its own.")
        text: Optional[str] = None
        model: Optional[str] = Field(None, description="A served model: a trained tagger, or a retrieval model "
                                                       "for zero-shot labels [default: the first tagger "
                                                       "without labels, the first retrieval model with them].")
        template: Optional[str] = Field(None, description="Zero-shot: how a label becomes a text, e.g. 'ảnh {}' "
                                                          "[default: the prompt ensemble of `mmtools tag`].")
        top_k: Optional[int] = Field(None, ge=1, le=MAX_LABELS, description="At most this many tags.")
        threshold: Optional[float] = Field(None, ge=0.0, le=1.0, description="Keep tags scoring at least this "
                                           "[default: a tagger's tuned per-label thresholds; none zero-shot].")

    class FeaturesBody(BaseModel):
        description: Optional[str] = Field(None, description="The listing's text (required).")
        model: Optional[str] = Field(None, description="A served tagger [default: the first].")
        top_k: Optional[int] = Field(None, ge=1, le=MAX_LABELS, description="At most this many features.")
        threshold: Optional[float] = Field(None, ge=0.0, le=1.0,
                                           description="Replaces the tagger's tuned per-label thresholds.")

    async def read_body(request: Request, model: type[BaseModel], list_fields: tuple[str, ...] = (),
                        repeated: tuple[str, ...] = ()) -> tuple[Any, list[UploadFile]]:
        """The body as ``model``, from JSON or a form (form fields in ``list_fields`` may repeat or be
        comma-separated, those in ``repeated`` may repeat); uploaded files under 'image'."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        files: list[UploadFile] = []
        if content_type == "application/json":
            try:
                values = await request.json()
            except ValueError:
                raise HTTPProblem(400, "request body is not valid JSON", "send a JSON object, e.g. "
                                  "{\"query\": \"xe hơi\"}") from None
            if not isinstance(values, dict):
                raise HTTPProblem(400, "request body must be a JSON object", "e.g. {\"query\": \"xe hơi\"}")
        elif content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.form(max_files=16, max_fields=MAX_LABELS + 16)
            values = {}
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key != "image":
                        raise HTTPProblem(400, f"unexpected file field {key!r}", "upload images as 'image'")
                    files.append(value)
                elif key in list_fields:
                    values.setdefault(key, []).extend(v.strip() for v in value.split(",") if v.strip())
                elif key in repeated:
                    values.setdefault(key, []).append(value)
                else:
                    values[key] = value
        else:
            raise HTTPProblem(415, f"unsupported content type {content_type or '(none)'!r}",
                              "send application/json, or multipart/form-data with an 'image' file")
        try:
            return model.model_validate(values), files
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "body"
            raise HTTPProblem(422, f"{where}: {first.get('msg')}", fields_hint) from None

    @contextmanager
    def saved(upload: UploadFile) -> Iterator[str]:
        """An uploaded file written to a private temporary file (the image decoder reads paths)."""
        suffix = os.path.splitext(upload.filename or "")[1][:10]
        handle = tempfile.NamedTemporaryFile(prefix="mmtools-upload-", suffix=suffix, delete=False)
        try:
            with handle:
                upload.file.seek(0)
                while chunk := upload.file.read(1 << 20):
                    handle.write(chunk)
            yield handle.name
        finally:
            os.unlink(handle.name)

    async def work(function, *args, **kwargs):
        """Engine work in a thread, its errors as HTTP answers."""
        try:
            return await run_in_threadpool(function, *args, **kwargs)
        except ImageDecodeError as exc:
            raise HTTPProblem(422, f"image: {exc}", f"upload a JPEG, PNG or WebP photo of at most "
                                                    f"{engine.max_pixels:,} pixels") from None
        except LookupError as exc:
            raise HTTPProblem(404, str(exc.args[0]) if exc.args else str(exc),
                              "GET /health lists the served models and indexes") from None
        except UsageError as exc:
            raise HTTPProblem(400, exc.message, exc.hint or fields_hint) from None
        except (IndexFileError, ModelError) as exc:
            raise HTTPProblem(503, exc.message, exc.hint or "see the server's log") from None
        except FilterError as exc:  # a ValueError too
            raise HTTPProblem(400, f"where: {exc}", "e.g. \"where\": [\"tags=biển\", \"year>=2020\"]") from None
        except ValueError as exc:
            raise HTTPProblem(422, str(exc), fields_hint) from None

    def one_image(files: list[UploadFile], route: str) -> Optional[UploadFile]:
        if len(files) > 1:
            raise HTTPProblem(400, f"{route} takes one image at a time", "upload a single 'image' file")
        return files[0] if files else None

    def body_doc(model: type[BaseModel], images: str) -> dict:
        """OpenAPI for a body taken as JSON or as a form with image uploads (parsed by read_body)."""
        schema = model.model_json_schema()
        form = {**schema, "properties": {**schema.get("properties", {}), "image": {
            "type": "array" if images == "many" else "string", "description": "Image upload(s)",
            **({"items": {"type": "string", "format": "binary"}} if images == "many" else {"format": "binary"})}}}
        form.pop("required", None)
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema},
                                                              "multipart/form-data": {"schema": form}}}}

    router = APIRouter()

    @router.get("/health", summary="Server status: version, served models (retrieval or tagger) and indexes")
    def health() -> dict:
        return engine.health()

    @router.post("/search", summary="Search an index with a text or an uploaded image",
                 openapi_extra=body_doc(SearchBody, "one"))
    async def search(request: Request):
        params, files = await read_body(request, SearchBody, ("weights",), repeated=("where", "indexes", "then"))
        upload = one_image(files, "search")
        if (params.query is None) == (upload is None):
            raise HTTPProblem(400, "give exactly one of 'query' (text) or an 'image' upload",
                              "e.g. {\"query\": \"xe hơi\", \"k\": 5}, or a form with an 'image' file")
        if params.query is not None and not params.query.strip():
            raise HTTPProblem(422, "query is empty", "type some words to search for")
        problems: list = []

        def run(path: Optional[str]) -> list:
            from mmtools.serve.searching import http_search

            return http_search(engine, indexes=params.indexes or [params.index], text=params.query, image=path,
                               image_name=(upload.filename or "image") if upload is not None else "",
                               k=params.k, min_score=params.min_score, mode=params.mode, where=params.where,
                               restore=params.restore, then=params.then, within=params.within,
                               weights=params.weights, on_problem=problems.append)

        with (saved(upload) if upload is not None else nullcontext()) as path:
            hits = await work(run, path)
        if problems and not hits:
            if upload is not None:
                raise HTTPProblem(422, f"image: {problems[0].reason}", f"upload a JPEG, PNG or WebP photo of at "
                                                                      f"most {engine.max_pixels:,} pixels")
            raise HTTPProblem(422, problems[0].reason, fields_hint)
        return {"hits": hits}

    @router.post("/embed", summary="Embedding records for texts and/or uploaded images",
                 openapi_extra=body_doc(EmbedBody, "many"))
    async def embed(request: Request):
        params, files = await read_body(request, EmbedBody, ("texts",))
        if not params.texts and not files:
            raise HTTPProblem(400, "nothing to embed: give 'texts' or upload 'image' files",
                              "e.g. {\"texts\": [\"con mèo\"]}")
        model = await work(engine.served_model, params.model)
        records: list = []
        if params.texts:
            from mmtools.embed import text_items_from_lines

            problems: list = []
            items = list(text_items_from_lines(((str(i), t) for i, t in enumerate(params.texts)), "text"))
            records += await work(lambda: list(engine.embed_texts(items, model=model, on_problem=problems.append,
                                                                  vector_format=params.embedding_format)))
            if problems:
                raise HTTPProblem(422, str(problems[0]), "send non-empty texts")
        for upload in files:
            name = upload.filename or "image"
            with saved(upload) as path:
                records.append(await work(engine.embed_image, path, {"id": name, "path": name}, model=model,
                                          vector_format=params.embedding_format))
        return {"records": records}

    @router.post("/tag", summary="Tags for a text and/or an uploaded image: a trained tagger's, or zero-shot "
                                 "from candidate labels", openapi_extra=body_doc(TagBody, "one"))
    async def tag(request: Request):
        params, files = await read_body(request, TagBody, ("labels",))
        upload = one_image(files, "tag")
        if params.text is None and upload is None:
            raise HTTPProblem(400, "nothing to tag: give a 'text', an 'image' upload, or both",
                              "e.g. a form with text=... and an 'image' file")
        zero_shot = params.labels is not None
        if params.model:
            kind = await work(engine.served_kind, params.model)
        else:
            kind = RETRIEVAL if zero_shot else TAGGER
        if kind == TAGGER and (zero_shot or params.template):
            raise HTTPProblem(400, f"model {params.model} is a trained tagger with its own labels",
                              "leave out 'labels' and 'template' (they are for zero-shot tagging with a "
                              "retrieval model)")
        if kind == RETRIEVAL and not zero_shot:
            raise HTTPProblem(400, "zero-shot tagging needs candidate 'labels'",
                              "give 'labels', or name a trained tagger in 'model' (GET /health lists them)")
        model = await work(engine.served_model, params.model, kind)
        with (saved(upload) if upload is not None else nullcontext()) as path:
            if kind == TAGGER:
                tags, mode = await work(engine.tag_with_tagger, model, text=params.text, image=path,
                                        top_k=params.top_k, threshold=params.threshold)
                return {"model": model, "mode": mode, "tags": tags}
            from mmtools.tag.labels import unique_labels

            labels = unique_labels(params.labels, "request")
            if not labels:
                raise HTTPProblem(422, "labels: no non-empty label", "e.g. labels=xe hơi,con mèo")
            tags = await work(engine.tag, labels, model=model, text=params.text, image=path,
                              template=params.template, top_k=params.top_k, threshold=params.threshold)
            mode = "multimodal" if params.text is not None and path else "text-only" if path is None \
                else "image-only"
            return {"model": model, "mode": mode, "tags": tags}

    @router.post("/api/extract-features", summary="The rental-listing design's route: a trained tagger's "
                 "features for a description and an optional photo", openapi_extra=body_doc(FeaturesBody, "one"))
    async def extract_features(request: Request):
        params, files = await read_body(request, FeaturesBody)
        upload = one_image(files, "extract-features")
        if not (params.description or "").strip():
            raise HTTPProblem(400, "description is required",
                              "send the listing's text as the form field 'description' (and a photo as 'image' "
                              "if there is one)")
        model = await work(engine.served_model, params.model, TAGGER)
        with (saved(upload) if upload is not None else nullcontext()) as path:
            tags, mode = await work(engine.tag_with_tagger, model, text=params.description, image=path,
                                    top_k=params.top_k, threshold=params.threshold)
        return {"success": True, "model": model, "features": [t["label"] for t in tags],
                "confidence": [t["score"] for t in tags], "mode": mode}

    return router
