"""Training data: JSONL and CSV read alike, image paths relative to the data file, bad rows and images named."""

import os

import pytest

from mmtools.train.data import DataError, check_images, read_examples, require_examples, split_examples


def _collect():
    problems = []
    return problems, problems.append


def test_jsonl_with_captions_and_relative_paths(tmp_path, broken_files):
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.new("RGB", (40, 30), "blue").save(tmp_path / "img" / "a.jpg")
    data = tmp_path / "train.jsonl"
    data.write_text('{"id": "a", "path": "img/a.jpg", "captions": ["xe hơi", "  ", "ô tô"]}\n'
                    '{"path": "img/missing.jpg", "caption": "mèo"}\n'
                    f'{{"path": "{broken_files["truncated"]}", "caption": "hỏng"}}\n'
                    '{"other": 1}\nnot json\n', encoding="utf-8")
    problems, report = _collect()
    examples = read_examples(data, on_problem=report)
    assert [e.id for e in examples][0] == "a" and examples[0].texts == ["xe hơi", "ô tô"]
    assert examples[0].image == str(tmp_path / "img" / "a.jpg")
    assert len(problems) == 2  # the row with nothing usable, and the line that is not JSON
    kept = check_images(examples, on_problem=report)
    assert [e.id for e in kept] == ["a"]
    assert any("missing.jpg" in p.source for p in problems) and any("truncated" in p.source for p in problems)
    with pytest.raises(DataError, match="missing.jpg"):
        check_images(examples, strict=True)


def test_csv_in_the_design_layout(tmp_path):
    data = tmp_path / "rooms.csv"
    data.write_text("mota,dacdiem,image_path\n\"Phòng mát, có điều hòa\",\"mát, điều hòa\",r1.jpg\n"
                    "Gần trường,gần trường,\n", encoding="utf-8")
    examples = read_examples(data, image_column="image_path", text_columns=("mota",), tags_column="dacdiem")
    assert examples[0].texts == ["Phòng mát, có điều hòa"] and examples[0].tags == ["mát", "điều hòa"]
    assert examples[0].image == str(tmp_path / "r1.jpg") and examples[1].image is None
    assert examples[1].where == f"{data}:3"


def test_unusable_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_examples(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="no usable examples"):
        read_examples(empty)
    text_only = tmp_path / "t.jsonl"
    text_only.write_text('{"caption": "a"}\n')
    with pytest.raises(DataError, match="validation set has no usable examples with an image"):
        require_examples(read_examples(text_only), "validation set", need_image=True)


def test_split_is_deterministic_and_disjoint(tmp_path):
    data = tmp_path / "t.jsonl"
    data.write_text("".join(f'{{"id": "{i}", "caption": "c{i}"}}\n' for i in range(20)))
    examples = read_examples(data)
    train, held = split_examples(examples, 0.25, seed=3)
    assert len(held) == 5 and not {e.id for e in train} & {e.id for e in held}
    assert [e.id for e in split_examples(examples, 0.25, seed=3)[1]] == [e.id for e in held]


def _per_caption_csv(tmp_path, images=8, captions=3):
    """The usual Flickr/COCO layout: one row per caption, each image on several rows (written two ways)."""
    from PIL import Image

    (tmp_path / "img").mkdir(exist_ok=True)
    rows = ["image,caption"]
    for i in range(images):
        Image.new("RGB", (32, 32), (20 * i, 0, 0)).save(tmp_path / "img" / f"{i}.png")
        for c in range(captions):
            # the same file named two ways: grouping is by the resolved path
            rows.append(f"{'img/' if c % 2 else './img/../img/'}{i}.png,ảnh {i} số {c}")
    path = tmp_path / "captions.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_rows_of_one_image_become_one_example_and_splits_keep_images_whole(tmp_path):
    from mmtools.train.data import group_by_image

    examples = read_examples(_per_caption_csv(tmp_path), image_column="image", text_columns=("caption",))
    assert len(examples) == 24
    grouped = group_by_image(examples)
    assert len(grouped) == 8 and all(len(e.texts) == 3 for e in grouped)
    assert grouped[1].texts == ["ảnh 1 số 0", "ảnh 1 số 1", "ảnh 1 số 2"]
    # --val-fraction on the raw rows: no image may land on both sides
    for seed in range(5):
        train, held = split_examples(examples, 0.25, seed=seed)
        images = lambda part: {os.path.realpath(e.image) for e in part}  # noqa: E731
        assert held and not images(train) & images(held)
        assert len(images(held)) == 2 and len(held) == 6


def test_a_per_caption_csv_reads_like_the_grouped_jsonl(tmp_path):
    import json

    from mmtools.train.retrieval import load_pairs

    csv_path = _per_caption_csv(tmp_path)
    jsonl = tmp_path / "grouped.jsonl"
    jsonl.write_text("".join(json.dumps({"path": f"img/{i}.png", "captions": [f"ảnh {i} số {c}" for c in range(3)]},
                                        ensure_ascii=False) + "\n" for i in range(8)), encoding="utf-8")
    from_csv = load_pairs(csv_path, "test data", image_column="image", caption_columns=["caption"])
    from_jsonl = load_pairs(jsonl, "test data")
    assert [os.path.realpath(e.image) for e in from_csv] == [os.path.realpath(e.image) for e in from_jsonl]
    assert [e.texts for e in from_csv] == [e.texts for e in from_jsonl]


class ColourEncoder:
    """A perfect model for _per_caption_csv: image i is red 20*i, and 'ảnh i ...' names it."""

    name, fingerprint, image_size = "colour-oracle", "x", 32

    def encode_images(self, images):
        import numpy as np

        return np.eye(16, dtype=np.float32)[[round(image.getpixel((0, 0))[0] / 20) for image in images]]

    def encode_texts(self, texts):
        import numpy as np

        return np.eye(16, dtype=np.float32)[[int(text.split()[1]) for text in texts]]


def test_a_perfect_model_reads_100_on_a_per_caption_csv(tmp_path):
    from mmtools.evaluate.retrieval import encode_examples, retrieval_metrics
    from mmtools.train.retrieval import load_pairs

    examples = load_pairs(_per_caption_csv(tmp_path), "test data", image_column="image", caption_columns=["caption"])
    report = retrieval_metrics(encode_examples(ColourEncoder(), examples))
    assert (report["images"], report["texts"]) == (8, 24)
    assert report["t2i"]["R@1"] == 100.0 and report["i2t"]["R@1"] == 100.0


def test_a_nan_model_is_refused_by_name(tmp_path):
    from mmtools.evaluate.retrieval import NonFiniteEmbeddings, encode_examples
    from mmtools.train.retrieval import load_pairs

    class Overflowing(ColourEncoder):
        name = "overflowing-model"

        def encode_texts(self, texts):
            return super().encode_texts(texts) * float("nan")

    examples = load_pairs(_per_caption_csv(tmp_path), "test data", image_column="image", caption_columns=["caption"])
    with pytest.raises(NonFiniteEmbeddings, match="overflowing-model.*NaN") as caught:
        encode_examples(Overflowing(), examples)
    assert "fp16" in caught.value.hint
