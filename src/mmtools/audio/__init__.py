"""Audio: decoding sound tracks with PyAV (``decode``) and speech recognition (``transcribe``): what is said in
videos and audio files, as timed segments that search like video moments. PyAV and transformers are imported
only when a file is actually read or a model loaded."""

from __future__ import annotations

AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".wma", ".aiff",
                              ".aif"})
