"""Speech to timed text: transformers' automatic-speech-recognition pipeline (the Whisper family) over the sound
of videos and audio files, one record per spoken segment.

Records (the schema of `mmtools transcribe`, docs/records.md): ``path`` (the video or audio file), ``start``
and ``end`` (seconds), ``text``, ``language`` (the code the model detected or was told, e.g. ``vi``),
``time`` (= ``start``: a segment is a moment of its video, so search results, the web page, ``--html`` and
``--then`` treat it as one and play the video from there) and ``id`` = ``VIDEO_ID#t=START,END`` (a media
fragment of the segment; it never equals a keyframe's ``VIDEO_ID#t=TIME``). Indexed with the keyframes
(`embed-texts` embeds ``text``), the keyword channel finds what was said.

Loading: a local directory, a Hugging Face id or an alias (ASR_ALIASES), from the local Hugging Face cache
first and never unpickled (safetensors only); half precision on a GPU. Files are transcribed ``batch_size``
at a time; a file longer than 30 s is cut into 30-s chunks (with overlap) that are batched too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from mmtools.errors import ModelError, Problem, ProblemHandler, raise_problem
from mmtools.images import ImageDecodeError, ImageSource
from mmtools.records import Record
from mmtools.video.keyframes import format_seconds

DEFAULT_ASR_MODEL = "openai/whisper-large-v3-turbo"
ASR_MODEL_ENV = "MMTOOLS_ASR_MODEL"
ASR_ALIASES = {
    "whisper-turbo": "openai/whisper-large-v3-turbo",
    "whisper-large": "openai/whisper-large-v3",
    "whisper-small": "openai/whisper-small",
    "whisper-base": "openai/whisper-base",
    "whisper-tiny": "openai/whisper-tiny",
    "phowhisper-small": "vinai/PhoWhisper-small",
    "phowhisper-medium": "vinai/PhoWhisper-medium",
    "phowhisper-large": "vinai/PhoWhisper-large",
}
CHUNK_S = 30.0  # Whisper's window
# Fields of a keyframe (or embedding) record that describe one moment, not the file: not copied into segments.
MOMENT_FIELDS = frozenset({"id", "time", "frame", "shot", "shot_start", "shot_end", "fps", "video_duration",
                           "frame_path", "embedding", "embedding_model", "start", "end", "text", "language",
                           "score", "rank", "query_id"})


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    language: str | None


def resolve_asr_model(name: str | None) -> Any:
    """A ModelRef for a speech model named by a directory, an alias, an imported name or a hub id."""
    from mmtools.models.registry import ModelRef, resolve_model

    given = (name or os.environ.get(ASR_MODEL_ENV) or DEFAULT_ASR_MODEL).strip() or DEFAULT_ASR_MODEL
    if given in ASR_ALIASES:
        return ModelRef(name=ASR_ALIASES[given], location=ASR_ALIASES[given], is_local=False)
    return resolve_model(given)


class Transcriber:
    """A speech recognition pipeline, loaded once."""

    def __init__(self, model: str | None = None, device: str | None = None, *, batch_size: int = 8) -> None:
        from mmtools.models.device import choose_device, dtype_for

        self.ref = resolve_asr_model(model)
        self.device = choose_device(device)
        self.batch_size = batch_size
        model_object, processor = _load(self.ref, dtype_for(self.device))
        from transformers import pipeline

        tokenizer = processor.tokenizer
        if tokenizer.pad_token_id is None:  # batching pads the decoder's tokens
            tokenizer.pad_token = tokenizer.eos_token
        self.processor = processor
        self.model = model_object
        self.pipeline = pipeline("automatic-speech-recognition", model=model_object, tokenizer=tokenizer,
                                 feature_extractor=processor.feature_extractor, device=self.device,
                                 dtype=model_object.dtype)
        generation = model_object.generation_config
        self.languages = {token_id: token.strip("<|>") for token, token_id in
                          (getattr(generation, "lang_to_id", None) or {}).items()}
        self.multilingual = bool(getattr(generation, "is_multilingual", False) and self.languages)

    @property
    def rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    def detect_language(self, samples: Any) -> str | None:
        """The language code the model hears in the first 30 s (None for an English-only model)."""
        if not self.multilingual:
            return None
        import torch

        features = self.processor.feature_extractor(samples[:int(CHUNK_S * self.rate)], sampling_rate=self.rate,
                                                    return_tensors="pt").input_features
        features = features.to(self.model.device, dtype=self.model.dtype)
        with torch.inference_mode():
            token = int(self.model.detect_language(features)[0].reshape(-1)[-1])
        return self.languages.get(token)

    def transcribe(self, audios: list[Any], language: str | None = None) -> list[list[Segment]]:
        """Segments of each audio (float32 mono at ``rate``), in time order. ``language``: a code
        (``vi``) or None to detect each file's."""
        results: list[list[Segment]] = [[] for _ in audios]
        groups: dict[str | None, list[int]] = {}
        for i, samples in enumerate(audios):
            heard = language or self.detect_language(samples)
            groups.setdefault(heard, []).append(i)
        for heard, members in groups.items():
            kwargs: dict[str, Any] = {"task": "transcribe"} if self.multilingual else {}
            if heard and self.multilingual:
                kwargs["language"] = heard
            outputs = self.pipeline([{"raw": audios[i], "sampling_rate": self.rate} for i in members],
                                    batch_size=self.batch_size, chunk_length_s=CHUNK_S, return_timestamps=True,
                                    generate_kwargs=kwargs)
            for i, output in zip(members, outputs):
                duration = len(audios[i]) / self.rate
                results[i] = segments_of(output, duration, heard)
        return results


def segments_of(output: dict[str, Any], duration: float, language: str | None) -> list[Segment]:
    """The pipeline's timed chunks as segments: control characters and empty texts dropped, times kept inside
    the audio (an open end is the end of the audio), in time order, chunks with the same times joined."""
    timed = []
    for chunk in output.get("chunks") or [{"timestamp": (0.0, None), "text": output.get("text", "")}]:
        text = " ".join("".join(ch for ch in str(chunk.get("text") or "") if ch.isprintable() or ch.isspace())
                        .split())
        start, end = (list(chunk.get("timestamp") or (None, None)) + [None, None])[:2]
        if not text:
            continue
        start = min(max(0.0, float(start if start is not None else 0.0)), duration)
        end = min(max(start, float(end if end is not None else duration)), duration)
        timed.append((round(start, 3), round(end, 3), text))
    timed.sort(key=lambda s: (s[0], s[1]))
    segments: list[Segment] = []
    for start, end, text in timed:  # segments with the same times (clamped at the end) are one
        if segments and (segments[-1].start, segments[-1].end) == (start, end):
            segments[-1] = Segment(start, end, f"{segments[-1].text} {text}", language)
        else:
            segments.append(Segment(start, end, text, language))
    return segments


def segment_id(source_id: str, start: float, end: float) -> str:
    """``VIDEO_ID#t=START,END``: the media fragment of a segment."""
    return f"{source_id}#t={format_seconds(start)},{format_seconds(end)}"


def speech_records(sources: Iterable[ImageSource], transcriber: Transcriber, *, language: str | None = None,
                   on_problem: ProblemHandler = raise_problem) -> Iterator[Record]:
    """One record per spoken segment of each file, in input order. Files without readable sound are reported
    and skipped; a file named twice (keyframe records of one video) is transcribed once."""
    from mmtools.audio.decode import read_audio

    seen: set[str] = set()
    batch: list[tuple[ImageSource, Any]] = []

    def flush() -> Iterator[Record]:
        if not batch:
            return
        found = transcriber.transcribe([samples for _source, samples in batch], language)
        for (source, _samples), segments in zip(batch, found):
            kept = {key: value for key, value in source.record.items() if key not in MOMENT_FIELDS}
            for segment in segments:
                yield {**kept, "path": source.record.get("path", source.path),
                       "id": segment_id(source.id, segment.start, segment.end), "time": segment.start,
                       "start": segment.start, "end": segment.end, "text": segment.text,
                       "language": segment.language}
        batch.clear()

    for source in sources:
        file_id = _file_id(source)
        if file_id in seen:
            continue
        seen.add(file_id)
        source = ImageSource(file_id, source.path, source.record)
        try:
            samples, damage = read_audio(source.path, transcriber.rate)
        except ImageDecodeError as exc:
            on_problem(Problem(source.path, f"{exc}, skipped"))
            continue
        if damage:
            on_problem(Problem(source.path, f"{damage}; what was heard before it is kept"))
        batch.append((source, samples))
        if len(batch) >= transcriber.batch_size:
            yield from flush()
    yield from flush()


def _file_id(source: ImageSource) -> str:
    """The id of the file itself: a keyframe record's id less its ``#t=`` fragment."""
    from mmtools.video import frame_time

    if frame_time(source.record) is not None and "#t=" in source.id:
        return source.id.rsplit("#t=", 1)[0]
    return source.id


def _load(ref: Any, dtype: Any) -> tuple[Any, Any]:
    """Model and processor: from the local cache (or directory) first, from the hub only when that fails
    and the hub can be reached (the dual encoders' loading, with a speech model's parts)."""
    from mmtools.models.hf_dual import _load as load_model

    return load_model(ref, lambda ref, location, local_only: _load_from(ref, location, dtype, local_only))


def _load_from(ref: Any, location: str, dtype: Any, local_only: bool) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForSpeechSeq2Seq, AutoProcessor

    config = AutoConfig.from_pretrained(location, local_files_only=local_only)
    try:
        model = AutoModelForSpeechSeq2Seq.from_pretrained(location, local_files_only=local_only,
                                                          use_safetensors=True, dtype=dtype)
    except ValueError as exc:
        if "Unrecognized configuration" in str(exc) or "AutoModelForSpeechSeq2Seq" in str(exc):
            raise ModelError(f"model {ref.name} is a {config.model_type!r} model, not a speech recognition "
                             "model", hint=f"pass a Whisper model (e.g. {DEFAULT_ASR_MODEL})") from None
        raise
    processor = AutoProcessor.from_pretrained(location, local_files_only=local_only)
    if not hasattr(processor, "feature_extractor") or not hasattr(processor, "tokenizer"):
        raise ModelError(f"model {ref.name} has no speech processor (feature extractor and tokenizer)")
    model.eval()
    return model, processor
