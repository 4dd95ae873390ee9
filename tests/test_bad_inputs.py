"""Every kind of bad input a folder or a pipe can hold: generated here, each refused in one line naming it,
the rest processed, the exit status as documented, nothing on disk damaged."""

import io
import os
import struct
import unicodedata
import zlib

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mmtools.cli.app import app
from mmtools.images import ImageDecodeError, discover_images, load_image
from mmtools.index import IndexReader, index_records
from mmtools.records import encode_vector, iter_lines, read_records


def png_claiming(width, height):
    """A tiny PNG whose header claims huge dimensions (a decompression bomb's calling card)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture
def corpus(tmp_path):
    """A folder of good and bad images; returns (folder, good file names, bad file names)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    good, bad = [], []

    def add(name, good_one=True):
        (good if good_one else bad).append(name)
        return folder / name

    Image.new("RGB", (40, 30), "red").save(add("plain.jpg"))
    whole = io.BytesIO()
    Image.new("RGB", (200, 150), "red").save(whole, "JPEG", quality=95)
    add("truncated.jpg", False).write_bytes(whole.getvalue()[:300])
    add("empty.jpg", False).write_bytes(b"")
    add("text.jpg", False).write_text("not an image")
    add("bomb.png", False).write_bytes(png_claiming(30000, 30000))
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(add("cmyk.jpg"))
    Image.fromarray((np.arange(256, dtype=np.uint16).reshape(16, 16) * 256).astype(np.uint16)).save(add("deep.png"))
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.save(add("palette.png"), transparency=1)
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    frames[0].save(add("animated.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    rotated = Image.new("RGB", (40, 20), "blue")
    rotated.paste(Image.new("RGB", (20, 20), "red"), (0, 0))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise: the left half goes to the top
    rotated.save(add("rotated.jpg"), exif=exif, quality=95)
    os.symlink(folder / "gone.jpg", add("broken-link.jpg", False))
    os.symlink(folder, folder / "loop")  # a link loop: walked once
    Image.new("RGB", (16, 16), "green").save(add(unicodedata.normalize("NFD", "Hà Nội.jpg")))
    Image.new("RGB", (16, 16), "green").save(folder / ".hidden.jpg")
    (folder / "._plain.jpg").write_bytes(b"\0\5\26\7 AppleDouble")
    latin1 = os.fsencode(str(folder)) + b"/caf\xe9.jpg"
    Image.new("RGB", (16, 16)).save(latin1.decode("utf-8", "surrogateescape"))
    bad.append("caf\ufffd.jpg")
    if os.geteuid() != 0:  # root reads everything
        locked = add("locked.jpg", False)
        Image.new("RGB", (8, 8)).save(locked)
        locked.chmod(0)
    return folder, good, bad


def test_each_bad_image_is_one_line_and_the_rest_is_embedded(corpus, siglip_dir, tmp_path):
    folder, good, bad = corpus
    result = CliRunner().invoke(app, ["embed-images", str(folder), "--model", siglip_dir, "--no-cache"])
    assert result.exit_code == 1
    records = [line for line in result.stdout.splitlines() if line]
    assert len(records) == len(good)
    *lines, summary = result.stderr.strip().splitlines()
    lines = [line for line in lines if ": exporting " not in line]  # the model's one-time ONNX export, announced
    assert len(lines) == len(bad), result.stderr
    assert summary.startswith(f"mmtools embed-images: {len(good)} embedded, {len(bad)} skipped, ")
    for name in bad:
        assert sum(name in line for line in lines) == 1, (name, result.stderr)
    messages = "\n".join(lines)
    assert "bomb.png: image is too large" in messages  # refused before decoding
    assert "broken symbolic link" in messages and "not valid UTF-8" in messages
    assert "Traceback" not in result.stderr


def test_decoded_pixels_are_right(corpus):
    folder, _, _ = corpus
    rotated = load_image(str(folder / "rotated.jpg"))
    assert rotated.size == (20, 40)
    top, bottom = rotated.getpixel((10, 5)), rotated.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    red = load_image(str(folder / "cmyk.jpg")).getpixel((8, 8))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    deep = load_image(str(folder / "deep.png"))
    assert deep.mode == "RGB" and deep.getpixel((0, 0)) == (0, 0, 0) and deep.getpixel((15, 15))[0] == 255
    assert load_image(str(folder / "palette.png")).getpixel((3, 3)) == (255, 255, 255)  # transparent: white
    first_frame = load_image(str(folder / "animated.gif")).getpixel((8, 8))
    assert first_frame[0] > 200 and first_frame[2] < 60


def test_walks_skip_hidden_and_appledouble_files_and_end_link_loops(corpus):
    folder, good, _ = corpus
    found = [os.path.basename(s.path) for s in discover_images([str(folder)], on_problem=lambda p: None)]
    assert ".hidden.jpg" not in found and "._plain.jpg" not in found
    assert len(found) == len(set(found))  # the loop did not walk the folder twice
    with_hidden = [os.path.basename(s.path)
                   for s in discover_images([str(folder)], hidden=True, on_problem=lambda p: None)]
    assert ".hidden.jpg" in with_hidden and "._plain.jpg" not in with_hidden


def test_nfd_names_get_nfc_ids_but_keep_a_path_that_opens(corpus):
    folder, _, _ = corpus
    source = next(s for s in discover_images([str(folder)], root=str(folder), on_problem=lambda p: None)
                  if "Hà" in unicodedata.normalize("NFC", s.path))
    assert source.id == "Hà Nội.jpg" == unicodedata.normalize("NFC", source.id)
    assert os.path.exists(source.path) and load_image(source.path).size == (16, 16)


def test_heic_needs_its_optional_package(tmp_path):
    path = tmp_path / "photo.heic"
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        path.write_bytes(b"\0\0\0\x18ftypheic")
        with pytest.raises(ImageDecodeError, match="pillow-heif"):
            load_image(str(path))
        return
    Image.new("RGB", (16, 16), "red").save(path)
    assert load_image(str(path)).getpixel((8, 8))[0] > 200


def test_one_file_however_named_is_one_id(tmp_path, photos, monkeypatch):
    monkeypatch.chdir(photos.parent)
    ways = [["photos/"], ["./photos"], [str(photos)], ["photos//nested/../"]]
    ids = [sorted(s.id for s in discover_images(way)) for way in ways]
    assert ids[0] == ids[1] == ids[2] == ids[3] and len(ids[0]) == 8
    relative = sorted(s.id for s in discover_images(["photos"], root="photos"))
    assert relative[0] == sorted(os.listdir(photos))[0] or "/" not in relative[0]


# ------------------------------------------------------------------------------------------------ JSONL


def unit(dim=8, seed=0):
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_bad_embedding_records_are_named_and_skipped_and_the_index_stays_whole(tmp_path):
    path = tmp_path / "idx.faiss"
    index_records([{"id": "keep", "embedding": encode_vector(unit()), "embedding_model": "m"}], path)
    jsonl = tmp_path / "in.jsonl"
    lines = [
        '{"id": "good", "embedding": %s, "embedding_model": "m"}' % list(map(float, unit(seed=1))),
        '{"id": "broken", "embedding": [1, 2',                       # malformed
        '["a", "list"]',                                              # not an object
        '{"id": "wrongtype", "embedding": {"x": 1}}',                 # wrong type
        '{"embedding": [1, 0, 0, 0, 0, 0, 0, 0]}',                    # missing id
        '{"id": "nan", "embedding": [NaN, 0, 0, 0, 0, 0, 0, 0]}',     # NaN: not JSON
        '{"id": "inf", "embedding": [1e400, 0, 0, 0, 0, 0, 0, 0]}',   # infinite
        '{"id": "short", "embedding": [1, 0, 0]}',                    # wrong dimension
        '{"id": "nan64", "embedding": "%s"}' % encode_vector([float("nan")] + [0.0] * 7),  # NaN, valid JSON
        '{"id": 7, "embedding": [0, 1, 0, 0, 0, 0, 0, 0]}',           # an id that is a number: kept as "7"
    ]
    jsonl.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "\xff"}\n')  # bad UTF-8
    problems = []
    summary = index_records(read_records([str(jsonl)], problems.append), path, on_problem=problems.append)
    assert summary.added == 2 and summary.skipped == 4
    named = [p.source for p in problems]
    assert len(problems) == 9 and len(set(named)) == 9
    assert any("NaN or infinite" in p.reason for p in problems)
    with IndexReader(path) as reader:
        assert sorted(reader.ids()) == ["7", "good", "keep"]


class Endless(io.RawIOBase):
    """A stream holding one line of ``size`` bytes, then a normal line, produced as it is read."""

    def __init__(self, size):
        self.left = size
        self.tail = b'\n{"id": "after"}\n'
        self.block = b"x" * (1 << 20)

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.left > 0:
            count = min(len(buffer), self.left, len(self.block))
            buffer[:count] = self.block[:count]
            self.left -= count
            return count
        count = min(len(buffer), len(self.tail))
        buffer[:count] = self.tail[:count]
        self.tail = self.tail[count:]
        return count


def test_a_one_gigabyte_line_is_skipped_without_holding_it(monkeypatch):
    stream = io.BufferedReader(Endless(1 << 30), buffer_size=1 << 20)
    lines = list(iter_lines(stream))
    assert lines[0] == (1, None)  # skipped
    assert lines[1][1] == b'{"id": "after"}\n'


def test_the_line_limit_is_a_parameter_and_named_in_the_message(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "' + "a" * 5000 + '"}\n{"id": "b"}\n')
    problems = []
    records = list(read_records([str(path)], problems.append, max_line_bytes=1024))
    assert records == [{"id": "b"}]
    assert problems[0].source.endswith("in.jsonl:1") and "longer than 1,024 bytes" in problems[0].reason
