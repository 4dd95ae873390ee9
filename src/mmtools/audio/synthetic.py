"""Tiny randomly initialised Whisper models and generated speech, for tests and benchmarks.

``tiny_whisper(dir)`` saves a Whisper model of a few hundred kilobytes (2 layers, width 32, 20 mel bins)
with a byte-level tokenizer carrying Whisper's special tokens (languages, tasks, ``<|notimestamps|>`` and
the 1501 timestamp tokens) and a feature extractor: everything `mmtools transcribe` loads from a real
Whisper directory, so the real loading code runs offline. Its text is garbage; its records are well formed.
``speech(path, text)`` writes what espeak-ng says (None when it is not installed); ``tone_video`` writes a
video with an audio track of tones.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

LANGUAGES = ("en", "vi", "fr", "zh")
TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>


def tiny_whisper(directory: str | Path, *, mel_bins: int = 20, seed: int = 0) -> Path:
    """Save a tiny random Whisper model, tokenizer and processor in ``directory``; returns it."""
    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)
    from tokenizers import pre_tokenizers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    specials = ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{code}|>" for code in LANGUAGES),
                "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                "<|notimestamps|>"]
    tokenizer = WhisperTokenizer(vocab=dict(vocab), merges=[], pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(TIMESTAMPS)])
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in specials}
    size = len(tokenizer)
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=size, num_mel_bins=mel_bins, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, d_model=32, max_source_positions=1500,
        max_target_positions=64, pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"], decoder_start_token_id=ids["<|startoftranscript|>"],
        begin_suppress_tokens=[], suppress_tokens=[])
    model = WhisperForConditionalGeneration(config)
    generation = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"], max_length=64,
        no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids[f"<|{code}|>"] for code in LANGUAGES},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        max_initial_timestamp_index=50, begin_suppress_tokens=[], suppress_tokens=[],
        prev_sot_token_id=ids["<|startofprev|>"])
    model.generation_config = generation
    model.save_pretrained(directory, safe_serialization=True)
    extractor = WhisperFeatureExtractor(feature_size=mel_bins)
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def speech(path: str | Path, text: str, *, voice: str = "en") -> Path | None:
    """``text`` spoken by espeak-ng into a WAV file at ``path``; None when espeak-ng is not installed."""
    program = shutil.which("espeak-ng") or shutil.which("espeak")
    if program is None:
        return None
    subprocess.run([program, "-v", voice, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return Path(path)


def tone_samples(seconds: float, rate: int = 16000, *, frequency: float = 440.0, seed: int = 0) -> Any:
    """Float32 mono samples: a tone that comes and goes (like syllables), with a little noise."""
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    envelope = (np.sin(2 * np.pi * 2.0 * t) > 0).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (0.4 * envelope * np.sin(2 * np.pi * frequency * t) + noise).astype(np.float32)


def write_audio_video(path: str | Path, samples: Any, rate: int = 16000, *, frames: int | None = None,
                      shot_lengths: Sequence[int] | None = None, fps: int = 25, audio_codec: str = "aac"
                      ) -> Path:
    """A small video (generated shots, as write_video's) with ``samples`` (float32 mono) as its sound; an
    audio file instead when ``path`` ends in .wav, .mp3, .m4a, .ogg or .flac."""
    import av
    import numpy as np

    from mmtools.video.synthetic import scene_frame, scene_texture

    path = Path(path)
    samples = np.asarray(samples, dtype=np.float32)
    audio_only = path.suffix.lower() in (".wav", ".mp3", ".m4a", ".ogg", ".flac")
    seconds = len(samples) / rate
    container = av.open(str(path), mode="w")
    video = None
    if not audio_only:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 128, 96, "yuv420p"
    codec = {"wav": "pcm_s16le", "flac": "flac", "ogg": "libvorbis", "mp3": "libmp3lame"}.get(
        path.suffix.lower().lstrip("."), audio_codec)
    audio = container.add_stream(codec, rate=rate, layout="mono")
    total = frames if frames is not None else int(round(seconds * fps))
    lengths = list(shot_lengths or [total])
    if video is not None:
        number = 0
        for shot, length in enumerate(lengths):
            texture = scene_texture(shot, 128, 96)
            for step in range(length):
                image = av.VideoFrame.from_ndarray(scene_frame(texture, step, 128, 96), format="rgb24")
                image.pts = number
                for packet in video.encode(image):
                    container.mux(packet)
                number += 1
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    frame_size = audio.codec_context.frame_size or 1024
    for start in range(0, len(pcm), frame_size):
        chunk = pcm[start:start + frame_size]
        if len(chunk) < frame_size and codec not in ("pcm_s16le", "flac"):
            chunk = np.concatenate([chunk, np.zeros(frame_size - len(chunk), dtype=np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        for packet in audio.encode(frame):
            container.mux(packet)
    for stream in ([video] if video is not None else []) + [audio]:
        for packet in stream.encode():
            container.mux(packet)
    container.close()
    return path
