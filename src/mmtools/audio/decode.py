"""Sound tracks with PyAV: the first audio stream of a video or audio file, resampled by FFmpeg to mono float
samples at the rate speech models take (16 kHz), and log-mel spectrograms of them."""

from __future__ import annotations

from typing import Any

from mmtools.video.decode import VideoDecodeError, _reason, format_clock, open_media, require_av

SAMPLE_RATE = 16000


class AudioDecodeError(VideoDecodeError):
    """A file's sound cannot be decoded; the message is the reason, phrased for the user."""


def read_audio(path: str, rate: int = SAMPLE_RATE) -> tuple[Any, str | None]:
    """``(float32 mono samples at rate, damage)`` of ``path``'s first audio stream; damage says where decoding
    stopped early, if it did. AudioDecodeError (an ImageDecodeError) when there is no sound to read at all."""
    import numpy as np

    av = require_av()
    container = open_media(path, AudioDecodeError)
    try:
        if not container.streams.audio:
            raise AudioDecodeError("has no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        pieces: list[Any] = []
        damage = None
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
        except (av.FFmpegError, MemoryError, ValueError) as exc:
            decoded = sum(len(p) for p in pieces) / rate
            damage = f"sound damaged after {format_clock(decoded)} ({_reason(exc)})"
        samples = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, dtype=np.float32)
        if not len(samples):
            raise AudioDecodeError(damage or "its audio track holds no sound")
        return samples, damage
    finally:
        container.close()


def log_mel(samples: Any, feature_extractor: Any = None, *, mel_bins: int = 80, rate: int = SAMPLE_RATE) -> Any:
    """The log-mel spectrogram (mel_bins × frames, 10 ms a frame) speech models see: ``feature_extractor``'s
    (a Whisper processor's) when given, else Whisper's own recipe with ``mel_bins`` bins; float32, for
    audio features beside text (no padding to 30 s)."""
    import numpy as np

    if feature_extractor is None:
        from transformers import WhisperFeatureExtractor

        feature_extractor = WhisperFeatureExtractor(feature_size=mel_bins, sampling_rate=rate)
    samples = np.asarray(samples, dtype=np.float32)
    features = feature_extractor(samples, sampling_rate=rate, return_tensors="np", padding="do_not_pad")
    return np.asarray(features["input_features"][0], dtype=np.float32)
