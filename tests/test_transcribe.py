"""mmtools transcribe: the sound of generated videos and audio files through a tiny random Whisper model (built
here, loaded offline through the real code), well-formed timed segments, bad inputs named and skipped; and
segments indexed beside keyframes: a keyword search for a word said finds the video at that moment, in
--html, and mixed with a visual step in --then."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

pytest.importorskip("av")
pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from mmtools.audio.synthetic import LANGUAGES, speech, tiny_whisper, tone_samples, write_audio_video  # noqa: E402
from mmtools.audio.transcribe import segment_id, segments_of  # noqa: E402
from mmtools.cli.app import app  # noqa: E402

BIN = Path(sys.executable).parent
runner = CliRunner()


def records(text):
    return [orjson.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return str(tiny_whisper(tmp_path_factory.mktemp("whisper") / "tiny-whisper"))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A video with sound (speech by espeak-ng where installed, else tones), an audio file, a video without
    sound, a text file named .mp3 and an empty .wav."""
    folder = tmp_path_factory.mktemp("media")
    spoken = speech(folder / "said.wav", "hello from the evening news", voice="en")
    if spoken is not None:
        from mmtools.audio.decode import read_audio

        samples, _ = read_audio(str(spoken))
        spoken.unlink()
    else:
        samples = tone_samples(3.0)
    write_audio_video(folder / "news.mp4", samples, shot_lengths=[40, 40])
    write_audio_video(folder / "radio.wav", tone_samples(2.5, frequency=300.0))
    from mmtools.video.synthetic import write_video

    write_video(folder / "silent.mp4", [20])
    (folder / "notes.mp3").write_text("not sound")
    (folder / "empty.wav").write_bytes(b"")
    return folder, len(samples) / 16000


def test_read_audio_gives_16k_mono_of_a_video_and_names_what_has_no_sound(media):
    from mmtools.audio.decode import AudioDecodeError, log_mel, read_audio

    folder, seconds = media
    samples, damage = read_audio(str(folder / "news.mp4"))
    assert damage is None and samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / 16000 - seconds) < 0.1 and np.abs(samples).max() > 0.05
    for name, reason in (("silent.mp4", "no audio track"), ("notes.mp3", "FFmpeg"), ("empty.wav", "empty")):
        with pytest.raises(AudioDecodeError, match=reason):
            read_audio(str(folder / name))
    mel = log_mel(samples, mel_bins=20)
    assert mel.shape[0] == 20 and abs(mel.shape[1] - len(samples) / 160) <= 2 and np.isfinite(mel).all()


def test_transcribe_writes_well_formed_timed_segments_and_skips_what_has_no_sound(media, whisper_dir):
    folder, seconds = media
    result = runner.invoke(app, ["transcribe", str(folder), "--model", whisper_dir, "--batch-size", "2"])
    assert result.exit_code == 1, result.stderr  # some inputs were skipped
    found = records(result.stdout)
    by_file = {}
    for record in found:
        by_file.setdefault(Path(record["path"]).name, []).append(record)
    assert set(by_file) == {"news.mp4", "radio.wav"}
    durations = {"news.mp4": seconds, "radio.wav": 2.5}
    for name, segments in by_file.items():
        assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
        for segment in segments:
            assert 0 <= segment["start"] <= segment["end"] <= durations[name] + 0.05
            assert segment["time"] == segment["start"]
            assert isinstance(segment["text"], str) and segment["text"].strip()
            assert segment["language"] in LANGUAGES
            assert segment["id"] == segment_id(str(folder / name), segment["start"], segment["end"])
        assert len({s["id"] for s in segments}) == len(segments)
    lines = result.stderr.strip().splitlines()
    assert any("silent.mp4" in line and "no audio track" in line for line in lines)
    assert any("notes.mp3" in line and "skipped" in line for line in lines)
    assert any("empty.wav" in line and "empty" in line for line in lines)
    assert "Traceback" not in result.stderr


def test_a_language_given_is_the_records_language_and_keyframe_records_name_each_video_once(media, whisper_dir,
                                                                                            tmp_path):
    folder, _ = media
    frames = tmp_path / "frames.jsonl"
    video = str(folder / "news.mp4")
    frames.write_text("".join(orjson.dumps({"path": video, "time": t, "shot": i, "id": f"{video}#t={t}"}).decode()
                              + "\n" for i, t in enumerate((0.4, 2.0))))
    result = runner.invoke(app, ["transcribe", str(frames), "-m", whisper_dir, "--language", "vi"])
    assert result.exit_code == 0, result.stderr
    found = records(result.stdout)
    assert found and {r["language"] for r in found} == {"vi"}
    assert all("shot" not in r and r["id"].startswith(str(folder / "news.mp4") + "#t=") for r in found)
    assert len({r["id"] for r in found}) == len(found)  # transcribed once, not once per keyframe


def test_a_model_that_is_no_speech_model_is_refused_in_one_sentence(media, siglip_dir, tmp_path):
    folder, _ = media
    result = runner.invoke(app, ["transcribe", str(folder / "radio.wav"), "-m", siglip_dir])
    assert result.exit_code == 3 and result.stdout == ""
    assert "not a speech recognition model" in result.stderr and "Traceback" not in result.stderr
    missing = runner.invoke(app, ["transcribe", str(folder / "radio.wav"), "-m", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "does not exist" in missing.stderr


def test_segments_of_keeps_times_inside_the_audio_and_joins_chunks_of_the_same_times():
    output = {"chunks": [{"timestamp": (1.0, 2.5), "text": " xin chào\x05 "},
                         {"timestamp": (0.2, 0.9), "text": "bản tin"},
                         {"timestamp": (2.5, None), "text": "thời sự"},
                         {"timestamp": (3.0, 3.0), "text": "tối"},
                         {"timestamp": (3.0, 3.0), "text": "nay"},
                         {"timestamp": (1.2, 1.4), "text": "  "}]}
    segments = segments_of(output, 3.0, "vi")
    assert [(s.start, s.end, s.text) for s in segments] == [
        (0.2, 0.9, "bản tin"), (1.0, 2.5, "xin chào"), (2.5, 3.0, "thời sự"), (3.0, 3.0, "tối nay")]
    assert {s.language for s in segments} == {"vi"}
    assert segment_id("v.mp4", 1.0, 2.5) == "v.mp4#t=1,2.5"


# ------------------------------------------------------------------------------- search what was said


def shell(command, cwd, **env):
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_speech_segments_are_indexed_with_keyframes_and_a_word_said_finds_the_video_then(tmp_path, siglip_dir):
    """Transcribe-shaped records with known text (a random model's text is garbage) go through embed-texts
    into the index the keyframes went into; keyword and hybrid search find the moment, --html plays the
    video from it, and --then chains a spoken step after a visual one."""
    from mmtools.video.synthetic import scene_still, write_video

    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "news.mp4", [30, 30, 30], scenes=[11, 22, 33])
    scene_still(11, 15).save(tmp_path / "still.png")
    said = [{"path": "videos/news.mp4", "start": 0.3, "end": 1.0, "text": "trời mưa to ở Hà Nội"},
            {"path": "videos/news.mp4", "start": 2.6, "end": 3.4,
             "text": "chào mừng các bạn đến với bản tin thời sự"}]
    (tmp_path / "speech.jsonl").write_text("".join(
        orjson.dumps({**s, "id": segment_id("videos/news.mp4", s["start"], s["end"]), "time": s["start"],
                      "language": "vi"}).decode() + "\n" for s in said))
    built = shell("(mmtools keyframes videos/ | mmtools embed-images; mmtools embed-texts speech.jsonl) "
                  "| mmtools index -o idx.faiss", tmp_path, MMTOOLS_MODEL=siglip_dir)
    assert built.returncode == 0, built.stderr
    assert "idx.faiss: 5 records" in built.stderr  # three keyframes and two segments
    found = shell('mmtools search -i idx.faiss --mode keyword "thời sự" -k 3 --html page.html', tmp_path)
    assert found.returncode == 0, found.stderr
    (hit,) = records(found.stdout)
    assert hit["path"] == "videos/news.mp4" and hit["time"] == 2.6 and hit["end"] == 3.4
    assert "[thời sự]" in hit["snippet"]
    page = (tmp_path / "page.html").read_text()
    assert 'src="videos/news.mp4#t=2.6"' in page
    assert "<q>" in page and "thời sự" in page.split("<q>", 1)[1]  # the words said there, under the player
    hybrid = shell('mmtools search -i idx.faiss --mode hybrid "thoi su" -k 1', tmp_path)
    assert hybrid.returncode == 0, hybrid.stderr
    assert records(hybrid.stdout)[0]["time"] == 2.6
    chained = shell('mmtools search -i idx.faiss --image still.png --then "thời sự" --within 5 -k 1', tmp_path)
    assert chained.returncode == 0, chained.stderr
    (result,) = records(chained.stdout)
    first, second = result["steps"]
    assert first["time"] < 1.2 and second["time"] == 2.6 and second["id"].endswith("#t=2.6,3.4")
