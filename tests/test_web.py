"""The web page's server side without a browser: the token, pictures of indexed records, the rendition cache.

(tests/test_web_page.py drives the page itself in headless Chromium.)
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from conftest import TEST_PHOTOS

TOKEN = "s3cret-token"


def photo_files(folder, count):
    """``count`` real JPEGs (from tests/data/vi-photos) copied into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((TEST_PHOTOS / "images").glob("*.jpg"))[:count]
    assert len(sources) == count, f"{TEST_PHOTOS / 'images'} holds fewer than {count} photos"
    paths = []
    for i, source in enumerate(sources):
        target = folder / f"p{i}.jpg"
        shutil.copy(source, target)
        paths.append(target)
    return paths


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """An index of four photos with made-up vectors (no model needed to read records back), one of them gone."""
    from mmtools.index import index_records
    from mmtools.records import encode_vector

    root = tmp_path_factory.mktemp("library")
    photos = photo_files(root / "photos", 4)
    rng = np.random.default_rng(0)
    records = []
    for i, path in enumerate(photos):
        vector = rng.normal(size=8).astype(np.float32)
        record = {"id": f"photo-{i}", "caption": f"ảnh số {i}", "embedding": encode_vector(vector / np.linalg.norm(vector)),
                  "embedding_model": "made-up"}
        record["path"] = str(path) if i != 1 else os.path.relpath(path, root)  # relative to the index's folder
        records.append(record)
    index_records(records, root / "idx.faiss")
    (root / "photos" / "p3.jpg").unlink()  # indexed, then deleted
    return root


def client(library, token=None, tmp_path=None):
    from starlette.testclient import TestClient

    from mmtools.serve.engine import Engine
    from mmtools.serve.http import create_app

    engine = Engine(device="cpu", indexes=[str(library / "idx.faiss")])
    return TestClient(create_app(engine, token=token, max_body_bytes=100_000), base_url="http://127.0.0.1")


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                            ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                            ("::", False), ("192.168.1.4", False), ("example.org", False)])
def test_what_counts_as_loopback(host, loopback):
    from mmtools.serve.auth import is_loopback

    assert is_loopback(host) is loopback


def test_with_a_token_every_route_but_health_and_the_page_shell_needs_it(library):
    with client(library, TOKEN) as http:
        assert http.get("/health").status_code == 200
        page = http.get("/")
        assert page.status_code == 200 and '<meta name="mmtools-auth" content="token">' in page.text
        assert http.get("/static/app.js").status_code == 200
        for method, path in [("get", "/thumb/photo-0"), ("get", "/image/photo-0"), ("post", "/search"),
                             ("post", "/similar"), ("post", "/tag"), ("post", "/embed"), ("get", "/openapi.json"),
                             ("get", "/docs")]:
            refused = getattr(http, method)(path)
            assert refused.status_code == 401, path
            assert set(refused.json()) == {"error", "hint"} and refused.headers["www-authenticate"].startswith("Bearer")
        wrong = http.get("/thumb/photo-0", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "not this server's" in wrong.json()["error"]
        good = http.get("/thumb/photo-0", headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status_code == 200 and good.headers["content-type"] == "image/jpeg"


def test_without_a_token_the_page_asks_for_none(library):
    with client(library) as http:
        page = http.get("/")
        assert '<meta name="mmtools-auth" content="none">' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert http.get("/thumb/photo-0").status_code == 200


def test_pictures_of_indexed_records_only_with_caching_headers(library):
    from PIL import Image
    import io

    with client(library) as http:
        thumb = http.get("/thumb/photo-0")
        image = Image.open(io.BytesIO(thumb.content))
        assert image.format == "JPEG" and max(image.size) <= 320
        assert thumb.headers["etag"] and "max-age" in thumb.headers["cache-control"]
        assert http.get("/thumb/photo-0", headers={"If-None-Match": thumb.headers["etag"]}).status_code == 304
        original = http.get("/image/photo-1")  # its path is relative to the index's folder
        assert original.status_code == 200
        assert original.content == (library / "photos" / "p1.jpg").read_bytes()
        gone = http.get("/thumb/photo-3")
        assert gone.status_code == 404 and "missing" in gone.json()["error"] and gone.json()["hint"]
        for path in (f"/image/{library / 'photos' / 'p0.jpg'}", "/image/../../etc/passwd", "/thumb/%2Fetc%2Fpasswd"):
            assert http.get(path).status_code == 404, path  # a path is never looked up, only ids
        assert http.get("/thumb/" + "x" * 5000).status_code == 404
        assert http.get("/thumb/photo-0", params={"index": "other"}).status_code == 404


def test_similar_refuses_bad_requests_in_the_api_shape(library):
    with client(library) as http:
        for body, status in [({"id": "nope"}, 404), ({"id": ""}, 422), ({"id": "photo-0", "k": 0}, 422),
                             ({"id": "photo-0", "k": 100_000}, 422)]:
            answer = http.post("/similar", json=body)
            assert answer.status_code == status and set(answer.json()) == {"error", "hint"}, body
        bad = http.post("/similar", content=b"{", headers={"content-type": "application/json"})
        assert bad.status_code == 400


def test_a_rendition_is_made_once_and_remade_when_the_photo_changes(tmp_path):
    from PIL import Image

    from mmtools.serve.thumbnails import Picture, RenditionCache

    photo = photo_files(tmp_path / "photos", 1)[0]
    cache = RenditionCache(tmp_path / "cache")
    first = cache.get(Picture(str(photo)))
    again = cache.get(Picture(str(photo)))
    assert first == again and cache.made == 1
    Image.new("RGB", (50, 40), "red").save(photo)
    os.utime(photo, ns=(1, 1))
    changed = cache.get(Picture(str(photo)))
    assert changed.etag != first.etag and cache.made == 2
    assert Image.open(changed.path).size == (50, 40)  # never enlarged


def test_the_cache_stays_within_its_bound_dropping_the_least_recently_used(tmp_path):
    from mmtools.serve.thumbnails import Picture, RenditionCache

    photos = photo_files(tmp_path / "photos", 6)
    probe = RenditionCache(tmp_path / "probe")
    size = max(probe.get(Picture(str(p)), 64).path.stat().st_size for p in photos)
    cache = RenditionCache(tmp_path / "cache", max_bytes=4 * size)
    made = [cache.get(Picture(str(p)), 64) for p in photos[:3]]
    os.utime(made[1].path, (1, 1))  # the least recently used
    for photo in photos[3:]:
        cache.get(Picture(str(photo)), 64)
    kept = list((tmp_path / "cache").glob("*/*.jpg"))
    assert sum(f.stat().st_size for f in kept) <= 4 * size
    assert not made[1].path.exists() and made[2].path.exists()
    assert RenditionCache(tmp_path / "cache", max_bytes=4 * size)._bytes == sum(f.stat().st_size for f in kept)


def test_a_video_records_picture_is_its_frame_at_that_moment(tmp_path):
    av = pytest.importorskip("av")

    from mmtools.serve.thumbnails import Picture, RenditionCache
    from mmtools.serve.web import record_picture

    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):  # one second red, one second blue
            colour = (255, 0, 0) if i < 10 else (0, 0, 255)
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), colour, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    picture = record_picture({"path": str(clip), "time": 1.5}, "clip.mp4#t=1.5", tmp_path / "idx.faiss")
    assert picture == Picture(str(clip), 1.5) and picture.browser_type() is None
    red, blue = (np.asarray(Picture(str(clip), t).load(10**8, 64)).mean(axis=(0, 1)) for t in (0.2, 1.5))
    assert red[0] > 200 > red[2] and blue[2] > 200 > blue[0]
    from PIL import Image

    assert Image.open(RenditionCache(tmp_path / "cache").get(picture).path).size == (64, 48)


def test_beyond_loopback_without_a_token_is_refused_before_anything_loads(monkeypatch):
    from typer.testing import CliRunner

    from mmtools.cli.app import app

    monkeypatch.delenv("MMTOOLS_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve", "--http", "0.0.0.0:0", "-i", "nowhere.faiss"])
    assert result.exit_code == 2
    assert "listens beyond this machine, and there is no token" in result.stderr and "--insecure" in result.stderr


@pytest.fixture(scope="module")
def video_library(tmp_path_factory):
    """The keyframes of a generated 3.6 s video (three shots) indexed with made-up vectors, beside a photo."""
    pytest.importorskip("av")
    from mmtools.images import discover_images
    from mmtools.index import index_records
    from mmtools.records import encode_vector
    from mmtools.video.keyframes import keyframe_records
    from mmtools.video.synthetic import write_video

    root = tmp_path_factory.mktemp("videos")
    write_video(root / "clip.mp4", [30, 30, 30])
    moments = list(keyframe_records(discover_images([str(root / "clip.mp4")])))
    photo = photo_files(root / "photos", 1)[0]
    rng = np.random.default_rng(1)
    records = []
    for record in [*moments, {"id": "photo", "path": str(photo)}]:
        vector = rng.normal(size=8).astype(np.float32)
        records.append({**record, "embedding": encode_vector(vector / np.linalg.norm(vector)),
                        "embedding_model": "made-up"})
    index_records(records, root / "idx.faiss")
    return root, moments


def test_a_video_moment_plays_its_source_video_with_range_requests(video_library):
    from urllib.parse import quote

    root, moments = video_library
    whole = (root / "clip.mp4").read_bytes()
    moment = moments[1]
    assert {"path", "time", "shot_start", "shot_end"} <= set(moment) and moment["shot_start"] < moment["time"]
    with client(root) as http:
        link = http.post("/video-url", json={"id": moment["id"]})
        assert link.status_code == 200, link.text
        body = link.json()
        assert body["time"] == moment["time"] and body["start"] == moment["shot_start"]
        assert "sig=" not in body["url"]  # no token, nothing to sign
        full = http.get(body["url"])
        assert full.status_code == 200 and full.content == whole
        assert full.headers["content-type"] == "video/mp4" and full.headers["accept-ranges"] == "bytes"
        part = http.get(body["url"], headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.content == whole[100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{len(whole)}"
        assert http.get(body["url"], headers={"Range": f"bytes={len(whole) + 10}-"}).status_code == 416
        for item in ("nope#t=1.0", quote(str(root / "clip.mp4"), safe=""), "../../etc/passwd"):
            gone = http.get(f"/video/{item}")
            assert gone.status_code == 404 and set(gone.json()) == {"error", "hint"}, item
        assert http.get("/video/photo").status_code == 404  # a photo's record: not a video
        assert http.post("/video-url", json={"id": "nope"}).status_code == 404


def test_with_a_token_a_video_opens_with_its_signed_url_only(video_library):
    root, moments = video_library
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with client(root, TOKEN) as http:
        path = f"/video/{moments[0]['id']}"
        assert http.get(path).status_code == 401
        assert http.post("/video-url", json={"id": moments[0]["id"]}).status_code == 401
        url = http.post("/video-url", json={"id": moments[0]["id"]}, headers=auth).json()["url"]
        assert "sig=" in url and TOKEN not in url
        assert http.get(url, headers={"Range": "bytes=0-99"}).status_code == 206  # no header needed
        other = http.post("/video-url", json={"id": moments[1]["id"]}, headers=auth).json()["url"]
        forged = other.split("?")[0] + "?" + url.split("?")[1]  # one video's signature on another
        assert http.get(forged).status_code == 401
        assert http.get("/thumb/photo?" + url.split("?")[1]).status_code == 401  # only videos open signed
        from mmtools.serve.auth import UrlSigner

        signer = UrlSigner(TOKEN)
        assert http.get(f"{url.split('?')[0]}?{signer.sign(path)}").status_code == 200  # as the page's
        assert http.get(f"{url.split('?')[0]}?{signer.sign(path, ttl_s=-10)}").status_code == 401  # expired
