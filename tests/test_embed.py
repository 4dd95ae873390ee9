import numpy as np
import pytest

from mmtools.embed import TextItem, embed_images, embed_texts, text_items_from_records
from mmtools.images import ImageSource, discover_images
from mmtools.models import load_encoder
from mmtools.records import decode_vector


@pytest.fixture(scope="module")
def encoder(siglip_dir):
    return load_encoder(siglip_dir, "cpu")


def test_image_records_come_out_in_input_order_with_fields_passed_through(encoder, photos, broken_files):
    sources = list(discover_images([str(photos)]))
    sources.insert(3, ImageSource("bad", str(broken_files["text"]), {"path": "x"}))
    sources[0].record["album"] = "Đà Lạt"
    problems = []
    records = list(embed_images(sources, encoder, batch_size=3, workers=3, on_problem=problems.append))
    assert [r["id"] for r in records] == [s.id for s in sources if s.id != "bad"]
    assert records[0]["album"] == "Đà Lạt"
    assert {r["embedding_model"] for r in records} == {encoder.name}
    assert {r["embedding_kind"] for r in records} == {"image"}
    assert [p.source for p in problems] == [str(broken_files["text"])]
    vectors = np.stack([decode_vector(r["embedding"]) for r in records])
    assert vectors.shape == (8, encoder.dim)


def test_threaded_pipeline_matches_a_plain_loop(encoder, photos):
    from mmtools.images import load_image

    sources = list(discover_images([str(photos)]))
    piped = [decode_vector(r["embedding"]) for r in embed_images(sources, encoder, batch_size=2, workers=4)]
    images = [load_image(s.path, draft_size=encoder.image_size) for s in sources]
    # In batches of 2 like the pipeline's: an int8 tower quantises each batch's activations with one scale
    plain = np.concatenate([encoder.encode_images(images[i:i + 2]) for i in range(0, len(images), 2)])
    assert np.allclose(np.stack(piped), plain, atol=1e-5)  # same vectors, same order, whatever the threads


def test_the_pipeline_streams_instead_of_reading_all_inputs_first(encoder, photos):
    source = next(iter(discover_images([str(photos)])))
    pulled = 0

    def endless():
        nonlocal pulled
        while True:
            pulled += 1
            yield ImageSource(f"copy-{pulled}", source.path)

    records = embed_images(endless(), encoder, batch_size=4, workers=2, prefetch=2)
    first = [next(records) for _ in range(5)]
    records.close()
    assert len(first) == 5
    assert pulled <= 4 * 5  # a few batches ahead, never the whole (endless) input


def test_list_valued_text_fields_give_one_record_per_text():
    problems = []
    items = list(text_items_from_records([
        {"id": "img1", "captions": ["con mèo", "một con mèo"]},
        {"id": "img2", "captions": 3},
        {"id": "img3"},
    ], "captions", problems.append))
    assert [(i.id, i.text, i.record["source_id"]) for i in items] == [("img1#0", "con mèo", "img1"),
                                                                        ("img1#1", "một con mèo", "img1")]
    assert [p.source for p in problems] == ["img2", "img3"]


def test_empty_texts_are_reported_and_long_ones_truncated_with_one_warning(encoder, caplog):
    items = [TextItem("a", "con mèo"), TextItem("b", "   "), TextItem("c", "mèo " * 100),
             TextItem("d", "xe " * 100)]
    problems = []
    with caplog.at_level("WARNING", logger="mmtools"):
        records = list(embed_texts(items, encoder, on_problem=problems.append))
    assert [r["id"] for r in records] == ["a", "c", "d"]
    assert [p.source for p in problems] == ["b"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and messages[0].startswith("c:") and "2 texts" in messages[1]
