"""EXIF in embed-images records: taken_at and gps from photos the test writes, and filters on them end to end."""

import json

import orjson
import pytest
from PIL import Image
from typer.testing import CliRunner

from mmtools.cli.app import app
from mmtools.images import photo_fields

runner = CliRunner()
EXIF_IFD, GPS_IFD = 0x8769, 0x8825


def write_photo(path, colour, *, original=None, offset=None, date_time=None, gps=None):
    """A JPEG with DateTimeOriginal (and OffsetTimeOriginal), DateTime, and a GPS position as cameras write
    them: degrees, minutes, seconds as rationals, with N/S and E/W references."""
    exif = Image.Exif()
    if date_time is not None:
        exif[0x0132] = date_time
    if original is not None:
        exif.get_ifd(EXIF_IFD)[0x9003] = original
    if offset is not None:
        exif.get_ifd(EXIF_IFD)[0x9011] = offset
    if gps is not None:
        (lat_ref, lat), (lon_ref, lon) = gps
        ifd = exif.get_ifd(GPS_IFD)
        ifd[1], ifd[2], ifd[3], ifd[4] = lat_ref, lat, lon_ref, lon
    Image.new("RGB", (48, 40), colour).save(path, exif=exif)
    return path


def test_date_taken_and_position_come_from_exif(tmp_path):
    photo = write_photo(tmp_path / "a.jpg", "red", original="2024:05:01 10:20:30", offset="+07:00",
                        date_time="2024:06:01 00:00:00", gps=(("N", (10.0, 46.0, 30.0)), ("E", (106.0, 42.0, 0.0))))
    assert photo_fields(str(photo)) == {"taken_at": "2024-05-01T10:20:30+07:00",
                                        "gps": {"lat": 10.775, "lon": 106.7}}


def test_no_timezone_is_invented_and_south_west_are_negative(tmp_path):
    photo = write_photo(tmp_path / "b.jpg", "blue", date_time="2023:12:31 23:59:59",
                        gps=(("S", (33.0, 52.0, 4.0)), ("W", (151.0, 12.0, 36.0))))
    fields = photo_fields(str(photo))
    assert fields["taken_at"] == "2023-12-31T23:59:59"  # DateTime when there is no DateTimeOriginal
    assert fields["gps"] == {"lat": pytest.approx(-33.8677778), "lon": pytest.approx(-151.21)}


@pytest.mark.parametrize("date", ["0000:00:00 00:00:00", "    :  :     :  :  ", "yesterday"])
def test_blank_or_malformed_dates_and_no_fix_positions_are_left_out(tmp_path, date):
    photo = write_photo(tmp_path / "c.jpg", "green", original=date,
                        gps=(("N", (0.0, 0.0, 0.0)), ("E", (0.0, 0.0, 0.0))))
    assert photo_fields(str(photo)) == {}


def test_photos_without_exif_and_other_files_give_nothing(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    assert [photo_fields(str(tmp_path / n)) for n in ("plain.png", "notes.txt", "broken.jpg")] == [{}, {}, {}]


def test_embed_images_records_then_index_and_search_where_taken_at(tmp_path, siglip_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    write_photo(photos / "old.jpg", "red", original="2023:08:15 09:00:00",
                gps=(("N", (21.0, 1.0, 48.0)), ("E", (105.0, 51.0, 0.0))))
    write_photo(photos / "new.jpg", "blue", original="2024:02:10 17:45:00", offset="+07:00",
                gps=(("N", (10.0, 46.0, 30.0)), ("E", (106.0, 42.0, 0.0))))
    write_photo(photos / "newer.jpg", "yellow", date_time="2025:01:01 08:00:00")
    Image.new("RGB", (48, 40), "white").save(photos / "none.jpg")
    embedded = runner.invoke(app, ["embed-images", "--model", siglip_dir, "--no-cache", "photos"],
                             catch_exceptions=False)
    assert embedded.exit_code == 0, embedded.stderr
    records = {r["path"].split("/")[-1]: r for r in map(orjson.loads, embedded.stdout.splitlines())}
    assert records["old.jpg"]["taken_at"] == "2023-08-15T09:00:00"
    assert records["old.jpg"]["gps"] == {"lat": 21.03, "lon": 105.85}
    assert records["new.jpg"]["taken_at"] == "2024-02-10T17:45:00+07:00"
    assert records["newer.jpg"]["taken_at"] == "2025-01-01T08:00:00" and "gps" not in records["newer.jpg"]
    assert "taken_at" not in records["none.jpg"] and "gps" not in records["none.jpg"]

    built = runner.invoke(app, ["index", "-o", "idx.faiss"], input=embedded.stdout, catch_exceptions=False)
    assert built.exit_code == 0, built.stderr

    def found(*where):
        args = ["search", "-i", "idx.faiss", "-k", "10", "--mode", "vector", "a photo"]
        for condition in where:
            args += ["--where", condition]
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        return sorted(orjson.loads(line)["path"].split("/")[-1] for line in result.stdout.splitlines())

    assert found("taken_at>=2024-01-01") == ["new.jpg", "newer.jpg"]
    assert found("taken_at<2024-02-10T18:00:00+07:00") == ["new.jpg", "old.jpg"]
    assert found("gps.lat<15") == ["new.jpg"]
    assert found("taken_at>=2024-01-01", "gps.lon>100") == ["new.jpg"]


def test_a_records_own_date_wins_over_exif(tmp_path, siglip_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_photo(tmp_path / "a.jpg", "red", original="2024:05:01 10:20:30")
    line = json.dumps({"path": "a.jpg", "taken_at": "1999-12-31"})
    result = runner.invoke(app, ["embed-images", "--model", siglip_dir, "--no-cache", "-"], input=line + "\n",
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert orjson.loads(result.stdout)["taken_at"] == "1999-12-31"
