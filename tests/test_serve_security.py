"""No one in (issue 25): the HTTP server sends no file a link smuggled into the collection, answers no
foreign Host without a token, tells a tokenless /health nothing, signs what a video URL opens, and answers
odd requests (nested JSON, bad ranges, slow headers) in its documented shape or not at all."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import numpy as np
import pytest

from test_web import photo_files

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A rooted index: a real photo, a photo replaced by a link to /etc/passwd, one replaced by a link to a
    JPEG outside the collection, and an absolute path that is a link to a secret file."""
    from mmtools.index import index_records
    from mmtools.records import encode_vector

    base = tmp_path_factory.mktemp("guarded")
    root = base / "photos"
    photo_files(root, 2)
    outside = photo_files(base / "elsewhere", 1)[0]
    secret = base / "secret.txt"
    secret.write_text("root:x:0:0:not for the web\n")
    (root / "p1.jpg").unlink()
    os.symlink("/etc/passwd" if os.path.exists("/etc/passwd") else secret, root / "p1.jpg")
    os.symlink(outside, root / "p2.jpg")
    os.symlink(secret, root / "p3.jpg")
    (root / "sub").mkdir()
    os.symlink(root / "p0.jpg", root / "sub" / "inner.jpg")  # a link that stays inside: fine
    rng = np.random.default_rng(0)
    records = []
    for i, name in enumerate(["p0.jpg", "p1.jpg", "p2.jpg", "sub/inner.jpg"]):
        vector = rng.normal(size=8).astype(np.float32)
        records.append({"id": f"photo-{i}", "path": name, "embedding": encode_vector(vector / np.linalg.norm(vector)),
                        "embedding_model": "made-up"})
    vector = rng.normal(size=8).astype(np.float32)
    records.append({"id": "absolute", "path": str(root / "p3.jpg"),
                    "embedding": encode_vector(vector / np.linalg.norm(vector)), "embedding_model": "made-up"})
    index_records(records, base / "idx.faiss", root=root)
    return base


def client(library, token=None, base_url="http://127.0.0.1"):
    from starlette.testclient import TestClient

    from mmtools.serve.engine import Engine
    from mmtools.serve.http import create_app

    engine = Engine(device="cpu", indexes=[str(library / "idx.faiss")])
    return TestClient(create_app(engine, token=token, max_body_bytes=100_000), base_url=base_url)


def test_a_link_out_of_the_collection_is_served_by_neither_image_nor_thumb(library):
    with client(library) as http:
        assert http.get("/image/photo-0").status_code == 200
        assert http.get("/thumb/photo-3").status_code == 200  # a link inside the collection
        for item_id in ("photo-1", "photo-2", "absolute"):
            for route in ("/image/", "/thumb/"):
                answer = http.get(route + item_id)
                assert answer.status_code == 404, (route, item_id)
                assert answer.headers["content-type"] == "application/json"
                assert b"root:" not in answer.content


def test_a_file_that_is_no_image_is_not_sent_as_one(tmp_path):
    from mmtools.index import index_records
    from mmtools.records import encode_vector

    (tmp_path / "fake.jpg").write_text("root:x:0:0:plain text named .jpg\n")
    index_records([{"id": "fake", "path": "fake.jpg", "embedding": encode_vector(np.ones(8, np.float32)),
                    "embedding_model": "made-up"}], tmp_path / "idx.faiss", root=tmp_path)
    with client(tmp_path) as http:
        answer = http.get("/image/fake")
        assert answer.status_code == 422 and b"root:" not in answer.content


@pytest.mark.parametrize("host, status", [("attacker.example", 421), ("attacker.example:8000", 421),
                                          ("127.0.0.1.nip.io", 421), ("127.0.0.1:8000", 200),
                                          ("localhost:8000", 200), ("[::1]:8000", 200), ("LOCALHOST", 200)])
def test_without_a_token_only_the_servers_own_host_names_are_answered(library, host, status):
    with client(library) as http:
        answer = http.get("/health", headers={"host": host})
        assert answer.status_code == status
        if status == 421:
            assert answer.json()["error"] and answer.json()["hint"]
            assert http.get("/image/photo-0", headers={"host": host}).status_code == 421


def test_the_bound_name_is_answered_too(library):
    from starlette.testclient import TestClient

    from mmtools.serve.engine import Engine
    from mmtools.serve.http import create_app

    app = create_app(Engine(device="cpu", indexes=[str(library / "idx.faiss")]), host="photos.lan")
    with TestClient(app, base_url="http://photos.lan:8000") as http:
        assert http.get("/health").status_code == 200
        assert http.get("/health", headers={"host": "evil.lan"}).status_code == 421


def test_a_token_servers_open_health_names_no_paths_pid_or_counts(library):
    with client(library, token=TOKEN, base_url="http://any.name") as http:
        open_answer = http.get("/health")
        assert open_answer.status_code == 200
        text = open_answer.text
        assert open_answer.json()["status"] == "ok"
        assert str(library) not in text and "pid" not in text and "records" not in text
        full = http.get("/health", headers={"authorization": f"Bearer {TOKEN}"})
        assert "pid" in full.json() and "indexes" in full.json()  # the token opens the full status
        assert http.get("/health", headers={"authorization": "Bearer wrong"}).status_code == 401


def test_the_bearer_scheme_is_case_insensitive(library):
    with client(library, token=TOKEN) as http:
        for scheme in ("Bearer", "bearer", "BEARER"):
            assert http.get("/image/photo-0", headers={"authorization": f"{scheme} {TOKEN}"}).status_code == 200
        assert http.get("/image/photo-0", headers={"authorization": f"Basic {TOKEN}"}).status_code == 401
        assert http.get("/image/photo-0", headers={"authorization": "bearer wrong"}).status_code == 401


def test_a_signed_video_url_opens_only_the_index_it_was_signed_for():
    from mmtools.serve.auth import UrlSigner

    signer = UrlSigner(TOKEN)
    query = signer.sign("/video/v.mp4#t=1", index="holiday")
    assert signer.valid("/video/v.mp4#t=1", query.encode())
    swapped = query.replace("index=holiday", "index=private")
    assert not signer.valid("/video/v.mp4#t=1", swapped.encode())
    dropped = "&".join(part for part in query.split("&") if not part.startswith("index="))
    assert not signer.valid("/video/v.mp4#t=1", dropped.encode())
    assert not signer.valid("/video/v.mp4#t=1", (query + "&index=private").encode())
    plain = signer.sign("/video/v.mp4#t=1")
    assert signer.valid("/video/v.mp4#t=1", plain.encode())
    assert not signer.valid("/video/v.mp4#t=1", (plain + "&index=private").encode())


@pytest.mark.parametrize("route", ["/similar", "/search", "/video-url"])
def test_deeply_nested_json_is_a_4xx_in_the_api_shape(library, route):
    with client(library) as http:
        body = "[" * 50_000 + "]" * 50_000
        answer = http.post(route, content=body, headers={"content-type": "application/json"})
        assert 400 <= answer.status_code < 500, answer.text
        assert "RecursionError" not in answer.text
        assert set(answer.json()) == {"error", "hint"}


def test_range_errors_come_back_as_json(library):
    with client(library) as http:
        good = http.get("/image/photo-0", headers={"range": "bytes=0-9"})
        assert good.status_code == 206 and len(good.content) == 10
        for header, status in (("bytes=999999999-", 416), ("lines=1-2", 400), ("bytes=9-2", 400)):
            answer = http.get("/image/photo-0", headers={"range": header})
            assert answer.status_code == status, header
            assert answer.headers["content-type"] == "application/json"
            assert set(answer.json()) == {"error", "hint"}


def test_a_connection_sending_its_headers_slowly_is_cut_off():
    import uvicorn

    from mmtools.serve.security import header_timeout_protocol

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                            http=header_timeout_protocol(0.5))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as fast:
            fast.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert fast.recv(1024).startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET / HTTP/1.1\r\n")
            closed = False
            for _ in range(20):  # one header byte every 0.25 s: never done within the deadline
                try:
                    slow.sendall(b"X")
                    time.sleep(0.25)
                    if slow.recv(1024, socket.MSG_DONTWAIT) == b"":
                        closed = True
                        break
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
            assert closed, "a connection still sending its headers after the deadline was kept open"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_health_json_on_a_tokenless_loopback_server_is_unchanged(library):
    with client(library) as http:
        health = http.get("/health").json()
        assert json.dumps(health)  # the full status, for the page and local tools
        assert "indexes" in health
