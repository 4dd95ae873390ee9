import numpy as np
import pytest
from PIL import Image

from mmtools.images import ImageDecodeError, discover_images, load_image, to_rgb


def test_folders_are_walked_recursively_in_a_stable_order(photos):
    (photos / ".hidden").mkdir()
    Image.new("RGB", (8, 8)).save(photos / ".hidden" / "x.jpg")
    (photos / "readme.txt").write_text("not an image")
    found = [s.path for s in discover_images([str(photos)])]
    assert len(found) == 8
    assert found == sorted(found, key=lambda p: (p.count("/nested/"), p))
    assert all(".hidden" not in p and not p.endswith(".txt") for p in found)
    assert all(s.id == s.path for s in discover_images([str(photos)]))


def test_globs_files_and_missing_inputs(photos, tmp_path):
    problems = []
    first = sorted(photos.glob("*.jpg"))[0]
    found = list(discover_images([str(photos / "nested" / "*.jpg"), str(first), str(tmp_path / "nope.jpg"),
                                  str(tmp_path / "none-*.png")], on_problem=problems.append))
    assert len(found) == 3
    assert [p.reason for p in problems] == ["no such file or folder", "no files match this pattern"]


def test_jsonl_records_keep_their_ids_and_fields(tmp_path, photos):
    first = sorted(photos.glob("*.jpg"))[0]
    records = tmp_path / "in.jsonl"
    records.write_text(f'{{"id": "p1", "path": "{first.name}", "album": "Hà Nội"}}\n{{"id": "p2"}}\n')
    problems = []
    found = list(discover_images([str(records)], root=str(photos), on_problem=problems.append))
    assert [(s.id, s.path, s.record["album"]) for s in found] == [("p1", str(photos / first.name), "Hà Nội")]
    assert problems[0].source == "p2" and "no 'path'" in problems[0].reason


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    Image.new("RGB", (120, 60), "green").save(path, exif=exif)
    assert load_image(str(path)).size == (60, 120)


def test_draft_mode_shrinks_large_jpegs_but_not_below_the_model_size(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1000), "white").save(path)
    image = load_image(str(path), draft_size=224)
    assert 224 <= min(image.size) < 1000


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK", "I;16", "F", "1"])
def test_every_mode_becomes_rgb(mode):
    image = Image.new(mode, (4, 4))
    assert to_rgb(image).mode == "RGB"


def test_transparency_becomes_white_not_black():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(image).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_images_keep_their_contrast():
    array = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    rgb = np.asarray(to_rgb(Image.fromarray(array)))  # a 16-bit greyscale image
    assert rgb.min() == 0 and rgb.max() == 255


def test_broken_files_give_reasons(broken_files, tmp_path):
    reasons = {}
    for name, path in broken_files.items():
        with pytest.raises(ImageDecodeError) as caught:
            load_image(str(path))
        reasons[name] = str(caught.value)
    assert "not an image" in reasons["text"]
    assert "empty" in reasons["empty"]
    assert "corrupt or truncated" in reasons["truncated"]
    with pytest.raises(ImageDecodeError, match="no such file"):
        load_image(str(tmp_path / "missing.jpg"))


def test_images_over_the_pixel_budget_are_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (3000, 3000)).save(path)
    with pytest.raises(ImageDecodeError, match="over the limit"):
        load_image(str(path), max_pixels=1_000_000)


def test_draft_mode_decoding_gives_the_vectors_of_the_exact_path(tmp_path, siglip_dir):
    """A photo far larger than the model's input, decoded at reduced scale and resized once, embeds within
    cosine 0.99 of the photo decoded whole and resized."""
    import numpy as np
    from PIL import Image, ImageFilter

    from mmtools.models import ModelCache

    rng = np.random.default_rng(0)
    encoder = ModelCache().get(siglip_dir, "cpu", "onnx-fp32")
    paths = []
    for i in range(4):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # shapes and colours, smoothed: photo-like
        big = Image.fromarray(small).resize((1600, 1200), Image.BICUBIC).filter(ImageFilter.GaussianBlur(3))
        paths.append(tmp_path / f"photo{i}.jpg")
        big.save(paths[-1], quality=90)
    draft = [load_image(str(p), draft_size=encoder.image_size) for p in paths]
    exact = [load_image(str(p)) for p in paths]
    assert all(image.width < 1600 for image in draft) and all(image.width == 1600 for image in exact)
    a, b = encoder.encode_images(draft), encoder.encode_images(exact)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 0.99
