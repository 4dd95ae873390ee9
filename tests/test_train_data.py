"""Training data: JSONL and CSV read alike, image paths relative to the data file, bad rows and images named."""

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
