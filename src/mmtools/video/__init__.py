"""Video: decoding with PyAV, shot detection, keyframe choice, moments in results and events in time order.

Submodules: ``decode`` (opening videos, the low-resolution analysis pass, frames at given times),
``shots`` (cut detection), ``keyframes`` (the records of `mmtools keyframes`), ``sources`` (video frames as
image sources of the embedding pipeline), ``moments`` (times in results) and ``temporal`` (queries of
several steps in time order). PyAV is the optional ``video`` extra and is imported only when a video is
actually opened.
"""

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ts",
                              ".mts", ".m2ts", ".wmv", ".flv", ".3gp", ".ogv"})
