"""A trained tagger behind the HTTP server: the design's /api/extract-features, /tag with a tagger, /health."""

from __future__ import annotations

import pytest

from test_tagger import LABELS, network

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def client(tagging_data, tmp_path_factory):
    from starlette.testclient import TestClient

    from mmtools.serve.engine import Engine
    from mmtools.serve.http import create_app
    from mmtools.tag.towers import save_tagger

    root = tmp_path_factory.mktemp("served-tagger")
    model, towers = network(tagging_data, "late")  # late fusion tags from a text alone, or with a photo
    save_tagger(root / "tagger", model, towers, {"wifi": 0.3})
    # Concat fusion with learned stand-ins for a missing modality (trained with modality dropout), and an
    # older concat tagger without them, which needs both.
    fused, towers = network(tagging_data, "concat", modality_dropout=0.3)
    save_tagger(root / "fused", fused, towers, {}, mode_thresholds={"text-only": {"wifi": 0.0}})
    old, towers = network(tagging_data, "concat")
    save_tagger(root / "old", old, towers, {})
    engine = Engine(device="cpu", models=[str(root / name) for name in ("tagger", "fused", "old")])
    engine.warm_up()
    with TestClient(create_app(engine), base_url="http://127.0.0.1") as test_client:
        test_client.root = root
        yield test_client


def photo(tagging_data) -> bytes:
    return (tagging_data["root"] / "images" / "val-0000.png").read_bytes()


def test_health_names_the_tagger(client):
    body = client.get("/health").json()
    served = [m for m in body["served_models"] if m["kind"] == "tagger"]
    assert len(served) == 3
    assert all(m["labels"] == LABELS and m["modality"] == "both" for m in served)


def test_extract_features_from_a_description_alone_and_with_a_photo(client, tagging_data):
    text = client.post("/api/extract-features", data={"description": "phòng có wifi", "threshold": "0"})
    assert text.status_code == 200, text.text
    body = text.json()
    assert body["success"] is True and body["mode"] == "text-only"
    assert set(body["features"]) <= set(LABELS) and len(body["features"]) == len(body["confidence"]) == 4
    assert all(0 <= c <= 1 for c in body["confidence"])
    both = client.post("/api/extract-features", data={"description": "phòng có wifi", "threshold": "0"},
                       files={"image": ("room.png", photo(tagging_data), "image/png")})
    assert both.status_code == 200, both.text
    assert both.json()["mode"] == "multimodal" and both.json()["confidence"] != body["confidence"]


def test_a_fused_tagger_answers_a_listing_without_a_photo(client, tagging_data):
    fused = str(client.root / "fused")
    text = client.post("/api/extract-features", data={"description": "phòng có wifi", "model": fused})
    assert text.status_code == 200, text.text
    assert text.json()["mode"] == "text-only"
    assert "wifi" in text.json()["features"]  # the text-only mode's own thresholds (wifi at 0 here)
    both = client.post("/api/extract-features", data={"description": "phòng có wifi", "model": fused,
                                                      "threshold": "0"},
                       files={"image": ("room.png", photo(tagging_data), "image/png")})
    assert both.status_code == 200, both.text
    assert both.json()["mode"] == "multimodal" and len(both.json()["features"]) == 4
    # An older fused tagger has no stand-in: it refuses, saying how to get one.
    old = client.post("/api/extract-features", data={"description": "phòng có wifi", "model": str(client.root / "old")})
    assert old.status_code == 400 and "--modality-dropout" in old.json()["hint"]


def test_a_missing_description_is_a_400_with_a_hint(client):
    answer = client.post("/api/extract-features", data={"description": " "})
    assert answer.status_code == 400
    assert set(answer.json()) == {"error", "hint"} and "description" in answer.json()["hint"]


def test_tag_with_the_tagger_answers_its_own_labels(client):
    answer = client.post("/tag", data={"text": "phòng có wifi", "threshold": "0", "top_k": "2"})
    assert answer.status_code == 200, answer.text
    tags = answer.json()["tags"]
    assert len(tags) == 2 and {t["label"] for t in tags} <= set(LABELS)
    refused = client.post("/tag", data={"text": "x", "labels": "a,b", "model": "nowhere"})
    assert refused.status_code >= 400 and set(refused.json()) == {"error", "hint"}
