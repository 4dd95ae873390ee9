"""Nothing a user had is lost by a mistake of context (issue 25): a deleted index file, a deleted segment
folder, a sync against a missing or other folder, a damaged segment, a read-only copy, odd numbers, a disk
that fills up. Each test here failed on the main branch before these fixes."""

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmtools.cli.app import app
from mmtools.errors import IndexFileError
from mmtools.index import IndexReader, index_records, metadata_path
from mmtools.index.info import segments_folder
from mmtools.index.sync_guard import SyncRefused
from mmtools.records import encode_vector, loads_json

runner = CliRunner()


def unit_vectors(n, dim=16, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def records(n, prefix="r", seed=0, **fields):
    return [{"id": f"{prefix}{i}", "embedding": encode_vector(v), "embedding_model": "m", **fields}
            for i, v in enumerate(unit_vectors(n, seed=seed))]


def count(path):
    with IndexReader(path) as reader:
        return reader.info.count


def snapshot(path):
    """The bytes of the metadata and of every segment file."""
    folder = segments_folder(path)
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}
    return metadata_path(path).read_bytes(), files


# ------------------------------------------------------------------------------------- the index file


def test_a_deleted_index_file_is_written_again_from_its_metadata_and_no_record_is_lost(tmp_path):
    index = tmp_path / "idx.faiss"
    index_records(records(2000, "a"), index)
    index.unlink()
    with pytest.raises(IndexFileError, match="metadata .* is there"):
        IndexReader(index)
    summary = index_records(records(200, "k", seed=1), index)
    assert summary.info.count == 2200 and summary.added == 200
    assert count(index) == 2200
    with IndexReader(index) as reader:
        hits = reader.search(unit_vectors(2000)[:5], k=1)
    assert [h[0].id for h in hits] == [f"a{i}" for i in range(5)]


def test_through_the_cli_too(tmp_path):
    index = tmp_path / "idx.faiss"
    (tmp_path / "a.jsonl").write_text("\n".join(map(__import__("json").dumps, records(300, "a"))) + "\n")
    (tmp_path / "k.jsonl").write_text("\n".join(map(__import__("json").dumps, records(20, "k", seed=1))) + "\n")
    assert runner.invoke(app, ["index", "-o", str(index), str(tmp_path / "a.jsonl")]).exit_code == 0
    index.unlink()
    result = runner.invoke(app, ["index", "-o", str(index), str(tmp_path / "k.jsonl")])
    assert result.exit_code == 0, result.stderr
    assert "320 records" in result.stderr


def test_metadata_that_is_no_segmented_index_is_never_started_over(tmp_path):
    index = tmp_path / "idx.faiss"
    meta = metadata_path(index)
    meta.write_bytes(b"precious, not sqlite at all")
    with pytest.raises(IndexFileError, match="missing but its metadata"):
        index_records(records(3), index)
    assert meta.read_bytes() == b"precious, not sqlite at all"
    assert not index.exists()


def test_a_write_to_an_index_whose_segment_folder_is_gone_is_refused_and_changes_nothing(tmp_path):
    index = tmp_path / "idx.faiss"
    index_records(records(50), index)
    shutil.rmtree(segments_folder(index))
    before = metadata_path(index).read_bytes()
    with pytest.raises(IndexFileError, match="segment folder"):
        index_records(records(5, "k", seed=1), index)
    assert metadata_path(index).read_bytes() == before
    result = runner.invoke(app, ["index", "-o", str(index), "--remove", "r1"])
    assert result.exit_code != 0 and "segment folder" in result.stderr


def test_a_write_to_an_index_missing_one_segment_file_is_refused(tmp_path):
    index = tmp_path / "idx.faiss"
    index_records(records(20), index)
    index_records(records(20, "b", seed=2), index)
    victim = sorted(segments_folder(index).iterdir())[0]
    victim.unlink()
    with pytest.raises(IndexFileError, match=victim.name):
        index_records(records(1, "c", seed=3), index)


# ------------------------------------------------------------------------------------------- sync


def rooted(tmp_path, n=40):
    folder = tmp_path / "photos"
    folder.mkdir()
    batch = []
    for i, vector in enumerate(unit_vectors(n)):
        name = f"p{i}.jpg"
        (folder / name).write_bytes(b"x")
        batch.append({"id": name, "path": name, "embedding": encode_vector(vector), "embedding_model": "m"})
    index = tmp_path / "idx.faiss"
    index_records(batch, index, root=folder)
    return folder, index, batch


def test_sync_against_a_missing_folder_refuses_names_it_and_keeps_every_record(tmp_path):
    folder, index, _batch = rooted(tmp_path)
    shutil.rmtree(folder)  # an unmounted drive
    before = snapshot(index)
    result = runner.invoke(app, ["index", "-o", str(index), "--sync", "--root", str(folder), "--remove-from",
                                 os.devnull])
    assert result.exit_code != 0
    assert str(folder) in result.stderr and "missing" in result.stderr and "p0.jpg" in result.stderr
    assert "--allow-removal" in result.stderr
    assert snapshot(index) == before and count(index) == 40
    with pytest.raises(SyncRefused):
        index_records([], index, sync=True, root=folder)
    summary = index_records([], index, sync=True, root=folder, allow_removal=True)
    assert summary.removed == 40 and summary.info.count == 0


def test_sync_against_an_empty_folder_refuses(tmp_path):
    folder, index, _batch = rooted(tmp_path)
    for file in folder.iterdir():
        file.unlink()
    with pytest.raises(SyncRefused, match="empty"):
        index_records([], index, sync=True, root=folder)
    assert count(index) == 40


def test_sync_with_another_root_keeps_the_old_records_unless_told(tmp_path):
    folder, index, batch = rooted(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    for record in batch[:10]:
        (other / record["path"]).write_bytes(b"x")
    with pytest.raises(SyncRefused, match="not the one the index was built from"):
        index_records(batch[:10], index, sync=True, root=other)
    assert count(index) == 40


def test_sync_that_would_remove_more_than_half_refuses_and_lists_them(tmp_path):
    folder, index, batch = rooted(tmp_path)
    for record in batch[:25]:
        (folder / record["path"]).unlink()
    with pytest.raises(SyncRefused, match=r"remove 25 of 40 records \(p0.jpg, p1.jpg"):
        index_records(batch[25:], index, sync=True, root=folder)
    assert count(index) == 40
    # an ordinary tidy-up (a few files gone) goes on without being told
    for record in batch[:25]:
        (folder / record["path"]).write_bytes(b"x")
    (folder / "p3.jpg").unlink()
    assert index_records([], index, sync=True, root=folder).removed == 1


# -------------------------------------------------------------------------------------- checksums


def test_a_damaged_segment_is_an_error_naming_the_file_on_open_and_on_check(tmp_path):
    index = tmp_path / "idx.faiss"
    index_records(records(200), index)
    segment = next(p for p in segments_folder(index).iterdir())
    data = bytearray(segment.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = b"\xff" * 64  # vectors overwritten, size unchanged
    segment.write_bytes(bytes(data))
    with pytest.raises(IndexFileError, match=segment.name):
        IndexReader(index)
    result = runner.invoke(app, ["index", "-o", str(index), "--check"])
    assert result.exit_code == 3 and segment.name in result.stderr and "damaged" in result.stderr


def test_check_passes_on_a_sound_index_and_sees_a_truncated_large_segment(tmp_path, monkeypatch):
    from mmtools.index import segments

    index = tmp_path / "idx.faiss"
    index_records(records(200), index)
    result = runner.invoke(app, ["index", "-o", str(index), "--check"])
    assert result.exit_code == 0 and "match their checksums" in result.stderr
    monkeypatch.setattr(segments, "VERIFY_ON_OPEN_BYTES", 0)  # as if every segment were large
    segment = next(p for p in segments_folder(index).iterdir())
    data = bytearray(segment.read_bytes())
    data[-100] ^= 0xFF
    segment.write_bytes(bytes(data))
    IndexReader(index).close()  # too large to hash at every open: the size still matches
    result = runner.invoke(app, ["index", "-o", str(index), "--check"])
    assert result.exit_code == 3 and segment.name in result.stderr


# ------------------------------------------------------------------------------ read-only, disk full


def read_only_run(folder: Path, command: str) -> subprocess.CompletedProcess:
    """``command`` with ``folder`` on a read-only file system (a private bind mount), else read-only by
    permissions (skipped where neither can be arranged)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    if os.geteuid() == 0:
        if not shutil.which("unshare"):
            pytest.skip("needs unshare(1) to mount a read-only folder")
        # cd after mounting: a working folder entered before would still be the writable mount
        script = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && cd {folder} && {command}"
        run = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env,
                             cwd=folder)
        if "mount" in run.stderr and ("permission denied" in run.stderr.lower()
                                      or "not permitted" in run.stderr):
            pytest.skip(f"cannot mount read-only here: {run.stderr.strip()}")
        return run
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, cwd=folder)
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_an_index_on_a_read_only_file_system_can_be_searched_and_a_write_says_why_it_failed(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    index = folder / "idx.faiss"
    index_records(records(30), index)
    index_records(records(5, "k", seed=2), index)  # an update: its pages may still be in the WAL
    query = folder / "q.jsonl"
    vector = unit_vectors(30)[7]
    query.write_text(f'{{"id": "q", "embedding": "{encode_vector(vector)}", "embedding_model": "m"}}\n')
    python = sys.executable
    code = ("from mmtools.index import IndexReader; import numpy as np, sys; r = IndexReader('idx.faiss'); "
            "from mmtools.records import decode_vector, loads_json; "
            "v = decode_vector(loads_json(open('q.jsonl','rb').read())['embedding']); "
            "print(r.search(v[None], k=1)[0][0].id)")
    run = read_only_run(folder, f"{python} -c \"{code}\"")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "r7"
    write = read_only_run(folder, f"{python} -m mmtools index -o idx.faiss q.jsonl")
    assert write.returncode == 3, write.stderr
    assert "internal error" not in write.stderr
    assert "read-only" in write.stderr or "permission denied" in write.stderr, write.stderr


def test_a_full_disk_is_named_as_the_cause_and_the_index_stays_whole(tmp_path, monkeypatch):
    from mmtools.index import segments

    index = tmp_path / "idx.faiss"
    index_records(records(30), index)
    before = snapshot(index)
    (tmp_path / "k.jsonl").write_text("".join(__import__("json").dumps(r) + "\n" for r in records(5, "k", 3)))

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(segments_folder(index) / "x.faiss"))

    monkeypatch.setattr(segments, "write_index_file", full)
    result = runner.invoke(app, ["index", "-o", str(index), str(tmp_path / "k.jsonl")])
    assert result.exit_code == 3
    assert "disk is full" in result.stderr and "internal error" not in result.stderr
    assert snapshot(index) == before


# ----------------------------------------------------------------------------------------- locks


def test_a_refused_or_failed_write_leaves_no_lock_file(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"\xff\xd8 not an index")
    (tmp_path / "k.jsonl").write_text("".join(__import__("json").dumps(r) + "\n" for r in records(2)))
    result = runner.invoke(app, ["index", "-o", str(photo), str(tmp_path / "k.jsonl")])
    assert result.exit_code == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "k.jsonl"]
    (tmp_path / "empty.jsonl").write_text("")
    result = runner.invoke(app, ["index", "-o", str(tmp_path / "idx.faiss"), str(tmp_path / "empty.jsonl")])
    assert result.exit_code == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "empty.jsonl", "k.jsonl"]


# ---------------------------------------------------------------------------------------- numbers


def test_where_nan_matches_nothing_and_large_integers_compare_exactly():
    from mmtools.index.filters import parse_condition

    assert not parse_condition("year=nan").matches({"year": 2020})
    assert parse_condition("year!=nan").matches({"year": 2020})
    big = 2 ** 53
    assert not parse_condition(f"n={big + 1}").matches({"n": big})
    assert parse_condition(f"n>{big}").matches({"n": big + 1})


def test_integers_past_64_bits_survive_the_index_and_the_pipe(tmp_path):
    line = ('{"id": "x", "n": 10000000000000000000000000000000000000000, "m": -18446744073709551617, '
            f'"embedding": "{encode_vector(unit_vectors(1)[0])}", "embedding_model": "m"}}\n')
    (tmp_path / "in.jsonl").write_text(line)
    index = tmp_path / "idx.faiss"
    assert runner.invoke(app, ["index", "-o", str(index), str(tmp_path / "in.jsonl")]).exit_code == 0
    with IndexReader(index) as reader:
        stored = reader.get("x")
    assert stored["n"] == 10 ** 40 and isinstance(stored["n"], int)
    assert stored["m"] == -(2 ** 64) - 1
    exported = runner.invoke(app, ["index", "-o", str(index), "--export"])
    assert '"n":10000000000000000000000000000000000000000' in exported.stdout
    assert loads_json(exported.stdout.splitlines()[0])["m"] == -(2 ** 64) - 1


def test_merging_an_index_into_itself_changes_nothing(tmp_path):
    index = tmp_path / "idx.faiss"
    batch = [{"id": f"r{i}", "embedding": encode_vector(v * 3.0), "embedding_model": "m"}
             for i, v in enumerate(unit_vectors(50))]
    index_records(batch, index)
    with IndexReader(index) as reader:
        first = np.stack([v for v in reader.vectors_of(range(50))])
    for _ in range(3):
        result = runner.invoke(app, ["index", "-o", str(index), "--merge", str(index)])
        assert result.exit_code == 0, result.stderr
        assert "50 unchanged" in result.stderr, result.stderr
    with IndexReader(index) as reader:
        rows = [row for row, _, _ in reader.scan()]
        assert np.array_equal(reader.vectors_of(rows), first)


def test_the_summary_counts_unreadable_lines_as_skipped(tmp_path):
    good = records(2)
    (tmp_path / "in.jsonl").write_text(__import__("json").dumps(good[0]) + "\n{not json\n[1, 2]\n"
                                       + __import__("json").dumps(good[1]) + "\n")
    result = runner.invoke(app, ["index", "-o", str(tmp_path / "idx.faiss"), str(tmp_path / "in.jsonl")])
    assert result.exit_code == 1
    assert "2 added" in result.stderr and "2 skipped" in result.stderr, result.stderr
