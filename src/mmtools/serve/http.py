"""The HTTP API for web apps (FastAPI; OpenAPI page at /docs): /health, /search, /embed, /tag, and the web
page at / (mmtools.serve.web).

Bodies are JSON or multipart forms (for uploaded images). Answers carry the same records the CLI writes:
``/search`` the hit records of ``mmtools search``, ``/embed`` the embedding records of ``embed-texts`` and
``embed-images``. Bad input gets a 4xx with ``{"error": ..., "hint": ...}``; bodies above ``max_body_bytes``
are refused with 413 before they are read whole. Work runs in a thread pool, so a slow client (or a slow
upload) never holds up the event loop; concurrent requests share forward passes through the engine.
"""


import os
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from mmtools.errors import IndexFileError, MissingDependencyError, ModelError, UsageError

INSTALL_HINT = "install the server extra: pip install 'mmtools[serve]' (FastAPI and uvicorn)"
DEFAULT_MAX_BODY = 20 * 1024 * 1024
MAX_LABELS = 1000
MAX_TEXTS = 1024
MAX_K = 1000


def require_fastapi() -> None:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (for uploads)
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"mmtools serve --http needs {exc.name}, which is not installed",
                                     hint=INSTALL_HINT) from None


class RequestTooLarge(Exception):
    pass


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
                                                    "send a smaller image (or fewer texts)"))
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


def create_app(engine: Any, *, max_body_bytes: int = DEFAULT_MAX_BODY, max_pixels: Optional[int] = None,
               token: Optional[str] = None) -> Any:
    """The FastAPI application over ``engine`` (a mmtools.serve.engine.Engine), with the web page at ``/``;
    with ``token``, requests need it (see mmtools.serve.auth)."""
    require_fastapi()
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field, ValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile

    from mmtools import __version__
    from mmtools.images import ImageDecodeError
    from mmtools.serve.engine import LabelledQuery

    class HTTPProblem(Exception):
        def __init__(self, status: int, message: str, hint: str | None = None):
            self.status, self.message, self.hint = status, message, hint

    class SearchBody(BaseModel):
        query: Optional[str] = Field(None, description="Text to search with (or upload an 'image').")
        k: int = Field(10, ge=1, le=MAX_K, description="Hits to return.")
        index: Optional[str] = Field(None, description="Name of a served index [default: the first].")
        min_score: Optional[float] = Field(None, description="Leave out hits scoring below this.")

    class EmbedBody(BaseModel):
        texts: list[str] = Field(default_factory=list, max_length=MAX_TEXTS, description="Texts to embed.")
        model: Optional[str] = Field(None, description="A served model [default: the first].")
        embedding_format: str = Field("base64", pattern="^(base64|list)$")

    class TagBody(BaseModel):
        labels: list[str] = Field(min_length=1, max_length=MAX_LABELS, description="Candidate labels.")
        text: Optional[str] = None
        model: Optional[str] = None
        template: Optional[str] = Field(None, description="How a label becomes a text, e.g. 'ảnh {}' "
                                                       "[default: the prompt ensemble of `mmtools tag`].")

    class ORJSON(JSONResponse):  # numpy-aware and fast; FastAPI's ORJSONResponse is deprecated
        def render(self, content: Any) -> bytes:
            import orjson

            return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)

    app = FastAPI(title="mmtools", version=__version__, default_response_class=ORJSON,
                  description="Image–text search, embedding and tagging over warm models and indexes. Bodies: "
                              "JSON, or multipart/form-data with an 'image' file and the same fields.")

    @app.exception_handler(HTTPProblem)
    async def _problem(_request: Request, exc: HTTPProblem):
        return ORJSON(_error_body(exc.message, exc.hint), status_code=exc.status)

    @app.exception_handler(RequestTooLarge)
    async def _too_large(_request: Request, _exc: RequestTooLarge):
        return ORJSON(_error_body(f"request body is over {max_body_bytes:,} bytes"), status_code=413)

    async def read_body(request: Request, model: type[BaseModel], list_fields: tuple[str, ...] = ()) \
            -> tuple[Any, list[UploadFile]]:
        """The body as ``model``, from JSON or a form (form fields in ``list_fields`` may repeat or be
        comma-separated); uploaded files under 'image'."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        files: list[UploadFile] = []
        if content_type == "application/json":
            try:
                values = await request.json()
            except ValueError:
                raise HTTPProblem(400, "request body is not valid JSON") from None
            if not isinstance(values, dict):
                raise HTTPProblem(400, "request body must be a JSON object")
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
            raise HTTPProblem(422, f"{where}: {first.get('msg')}") from None

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
            raise HTTPProblem(422, f"image: {exc}") from None
        except LookupError as exc:
            raise HTTPProblem(404, str(exc.args[0]) if exc.args else str(exc)) from None
        except UsageError as exc:
            raise HTTPProblem(400, exc.message, exc.hint) from None
        except (IndexFileError, ModelError) as exc:
            raise HTTPProblem(503, exc.message, exc.hint) from None
        except ValueError as exc:
            raise HTTPProblem(422, str(exc)) from None

    def body_doc(model: type[BaseModel], images: str) -> dict:
        """OpenAPI for a body taken as JSON or as a form with image uploads (parsed by read_body)."""
        schema = model.model_json_schema()
        form = {**schema, "properties": {**schema.get("properties", {}), "image": {
            "type": "array" if images == "many" else "string", "description": "Image upload(s)",
            **({"items": {"type": "string", "format": "binary"}} if images == "many" else {"format": "binary"})}}}
        form.pop("required", None)
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema},
                                                              "multipart/form-data": {"schema": form}}}}

    @app.get("/health", summary="Server status: version, loaded models, open indexes")
    def health() -> dict:
        return engine.health()

    @app.post("/search", summary="Search an index with a text or an uploaded image",
              openapi_extra=body_doc(SearchBody, "one"))
    async def search(request: Request):
        params, files = await read_body(request, SearchBody)
        if (params.query is None) == (not files):
            raise HTTPProblem(400, "give exactly one of 'query' (text) or an 'image' upload")
        if len(files) > 1:
            raise HTTPProblem(400, "search takes one image at a time")
        index = await work(engine.named_index, params.index)

        def run(query: LabelledQuery) -> list:
            problems: list = []
            hits = list(engine.search(index, [query], k=params.k, min_score=params.min_score,
                                      on_problem=problems.append))
            if problems:
                raise HTTPProblem(422, problems[0].reason)
            return hits

        if params.query is not None:
            if not params.query.strip():
                raise HTTPProblem(422, "query is empty")
            return {"hits": await work(run, LabelledQuery("q1", text=params.query, shown=params.query))}
        with saved(files[0]) as path:
            name = files[0].filename or "image"
            return {"hits": await work(run, LabelledQuery(name, image=path, shown=name))}

    @app.post("/embed", summary="Embedding records for texts and/or uploaded images",
              openapi_extra=body_doc(EmbedBody, "many"))
    async def embed(request: Request):
        params, files = await read_body(request, EmbedBody, ("texts",))
        if not params.texts and not files:
            raise HTTPProblem(400, "nothing to embed: give 'texts' or upload 'image' files")
        model = await work(engine.served_model, params.model)
        records: list = []
        if params.texts:
            from mmtools.embed import text_items_from_lines

            problems: list = []
            items = list(text_items_from_lines(((str(i), t) for i, t in enumerate(params.texts)), "text"))
            records += await work(lambda: list(engine.embed_texts(items, model=model, on_problem=problems.append,
                                                                  vector_format=params.embedding_format)))
            if problems:
                raise HTTPProblem(422, str(problems[0]))
        for upload in files:
            name = upload.filename or "image"
            with saved(upload) as path:
                records.append(await work(engine.embed_image, path, {"id": name, "path": name}, model=model,
                                          vector_format=params.embedding_format, max_pixels=max_pixels))
        return {"records": records}

    @app.post("/tag", summary="Zero-shot tags for a text and/or an uploaded image, from candidate labels",
              openapi_extra=body_doc(TagBody, "one"))
    async def tag(request: Request):
        params, files = await read_body(request, TagBody, ("labels",))
        if len(files) > 1:
            raise HTTPProblem(400, "tag takes one image at a time")
        if params.text is None and not files:
            raise HTTPProblem(400, "nothing to tag: give a 'text', an 'image' upload, or both")
        from mmtools.tag.labels import unique_labels

        labels = unique_labels(params.labels, "request")
        if not labels:
            raise HTTPProblem(422, "labels: no non-empty label")
        model = await work(engine.served_model, params.model)
        if files:
            with saved(files[0]) as path:
                tags = await work(engine.tag, labels, model=model, text=params.text, image=path,
                                  template=params.template, max_pixels=max_pixels)
        else:
            tags = await work(engine.tag, labels, model=model, text=params.text, template=params.template)
        return {"model": model, "tags": tags}

    from mmtools.serve.web import add_web_page

    add_web_page(app, engine, max_pixels=max_pixels, token_required=bool(token))
    if token:
        from mmtools.serve.auth import TokenAuth

        return BodyLimit(TokenAuth(app, token), max_body_bytes)
    return BodyLimit(app, max_body_bytes)
