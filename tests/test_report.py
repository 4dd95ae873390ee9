"""Pictures of results: the contact sheet decodes and has the layout it claims (rows per query, thumbnails in
rank order), missing images become grey cells, and the HTML page links images relative to itself, escaped."""

import html
import os
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from mmtools.cli import app
from mmtools.report import Hit, HitRow, montage_layout, rows_from_records, write_html, write_montage
from mmtools.report.montage import BACKGROUND, MISSING

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
           "black": (0, 0, 0)}


@pytest.fixture
def coloured(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, rgb in COLOURS.items():
        Image.new("RGB", (120, 80), rgb).save(folder / f"{name}.png")
    return folder


def centre(box):
    return ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)


def test_rows_group_by_query_in_first_seen_order_and_rank_order():
    records = [{"query_id": "q2", "query": "b", "rank": 2, "score": 0.1, "id": "x"},
               {"query_id": "q1", "query": "a", "rank": 1, "score": 0.9, "path": "p.jpg", "id": "p.jpg"},
               {"query_id": "q2", "query": "b", "rank": 1, "score": 0.3, "id": "y"}]
    rows = rows_from_records(records)
    assert [r.query_id for r in rows] == ["q2", "q1"]
    assert [h.id for h in rows[0].hits] == ["y", "x"]
    assert rows[1].hits[0] == Hit(rank=1, score=0.9, path="p.jpg", id="p.jpg")


def test_montage_layout_one_row_per_query_thumbnails_in_rank_order(tmp_path, coloured):
    order = [["red", "green", "blue"], ["yellow", "black"]]
    rows = [HitRow(f"q{i}", f"truy vấn {i}: xe hơi màu đỏ",
                   [Hit(rank, 1 - rank / 10, f"photos/{name}.png", name) for rank, name in enumerate(names, 1)])
            for i, names in enumerate(order, 1)]
    target = tmp_path / "sheet.png"
    layout = write_montage(target, rows, thumb=64, base_dir=tmp_path)
    assert (layout.rows, layout.columns) == (2, 3)
    with Image.open(target) as sheet:
        assert sheet.format == "PNG"
        sheet = sheet.convert("RGB")
        assert sheet.size == layout.size == (8 + 3 * (64 + 8), 8 + 2 * layout.row_height)
        for r, names in enumerate(order):
            for c, name in enumerate(names):
                assert sheet.getpixel(centre(layout.thumb_box(r, c))) == COLOURS[name], (r, c)
        # the empty third cell of row 2 is background, and the caption strip under each thumbnail has ink
        assert sheet.getpixel(centre(layout.thumb_box(1, 2))) == BACKGROUND
        left, _, right, bottom = layout.thumb_box(0, 0)
        caption = sheet.crop((left, bottom, right, bottom + layout.caption)).convert("L")
        assert caption.getextrema()[0] < 100


def test_a_missing_image_is_a_grey_cell_and_a_reported_problem(tmp_path, coloured):
    problems = []
    rows = [HitRow("q1", "q", [Hit(1, 0.5, "photos/gone.png", "gone"), Hit(2, 0.4, "photos/red.png", "red")])]
    layout = write_montage(tmp_path / "s.png", rows, thumb=48, base_dir=tmp_path, on_problem=problems.append)
    with Image.open(tmp_path / "s.png") as sheet:
        sheet = sheet.convert("RGB")
        assert sheet.getpixel((layout.thumb_box(0, 0)[2] - 2, layout.thumb_box(0, 0)[3] - 2)) == MISSING
        assert sheet.getpixel(centre(layout.thumb_box(0, 1))) == COLOURS["red"]
    assert len(problems) == 1 and "photos/gone.png" in str(problems[0])


def test_html_links_relative_to_the_page_and_escapes_everything(tmp_path, coloured):
    (tmp_path / "out").mkdir()
    odd = coloured / "a b#<c>.png"
    Image.new("RGB", (10, 10), "red").save(odd)
    rows = [HitRow("q1", '<script>alert("x")</script> xe hơi',
                   [Hit(1, 0.9, "photos/a b#<c>.png", "odd"), Hit(2, 0.8, str(coloured / "red.png"), "red"),
                    Hit(3, 0.7, None, "text-only")])]
    page = tmp_path / "out" / "hits.html"
    write_html(page, rows, base_dir=tmp_path)
    text = page.read_text(encoding="utf-8")
    assert "<script>" not in text and html.escape('<script>alert("x")</script>') in text
    assert 'src="../photos/a%20b%23%3Cc%3E.png"' in text
    assert 'src="../photos/red.png"' in text  # an absolute path becomes relative to the page too
    assert "text-only" in text and text.count("<figure>") == 3
    for link in ("../photos/a b#<c>.png", "../photos/red.png"):
        assert (page.parent / link).exists()


def test_search_montage_and_html_from_the_cli(tmp_path, coloured, siglip_dir, monkeypatch):
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    embedded = runner.invoke(app, ["embed-images", "photos", "--model", siglip_dir])
    built = runner.invoke(app, ["index", "-o", "idx.faiss"], input=embedded.stdout)
    assert built.exit_code == 0, built.stderr
    result = runner.invoke(app, ["search", "--image", "photos/red.png", "--image", "photos/blue.png", "-k", "3",
                                 "--montage", "sheet.png", "--html", "report/hits.html"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 6  # the JSONL is still written
    layout = montage_layout([HitRow("a", "a", [Hit(i, 0, None, "") for i in range(3)])] * 2)
    with Image.open("sheet.png") as sheet:
        sheet = sheet.convert("RGB")
        assert sheet.size == layout.size
        assert sheet.getpixel(centre(layout.thumb_box(0, 0))) == COLOURS["red"]  # each image finds itself first
        assert sheet.getpixel(centre(layout.thumb_box(1, 0))) == COLOURS["blue"]
    page = Path("report/hits.html").read_text(encoding="utf-8")
    assert 'src="../photos/red.png"' in page and page.count("<figure>") == 6
