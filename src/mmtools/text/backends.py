"""Segmentation back ends. Each imports its library in ``__init__``, never at module import.

- underthesea (default): bundled CRF model, offline, no torch. Only its word segmenter is imported
  (``mmtools.text.underthesea_light``): all of underthesea imports transformers too, which takes seconds.
- VnCoreNLP (RDRsegmenter) through ``py_vncorenlp``: needs Java and a directory holding the jar and the
  word-segmenter model, which users download themselves (py_vncorenlp would fetch them with wget at run time;
  we never let it).
- pyvi: optional, ``pip install pyvi`` (pulls scikit-learn and SciPy).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from mmtools.text.normalize import DEFAULT_TONE_STYLE
from mmtools.errors import MissingDependencyError
from mmtools.text.segment import Segmenter

VNCORENLP_DIR_VARIABLE = "MMTOOLS_VNCORENLP_DIR"
VNCORENLP_JAR = "VnCoreNLP-1.2.jar"
VNCORENLP_MODEL_FILES = ("models/wordsegmenter/vi-vocab", "models/wordsegmenter/wordsegmenter.rdr")
VNCORENLP_URL = "https://github.com/vncorenlp/VnCoreNLP"


class UndertheseaSegmenter(Segmenter):
    name = "underthesea"
    # Its CRF was trained on "hoà"-style text (what underthesea's own normaliser produces, which we skip):
    # handing it that style gives word F1 95.75 instead of 95.55 on UD-VTB dev. The output keeps the user's
    # style; only the grouping comes back from the back end.
    backend_tone_style = "new"
    # Its CRF reads "có điều" ("but") into "có điều hòa" ("has air conditioning"): "có_điều_hòa" instead of
    # "có điều_hòa".
    builtin_words = ("điều hòa",)

    def __init__(self, *, dictionary: Iterable[str] | None = None, tone_style: str = DEFAULT_TONE_STYLE):
        super().__init__(dictionary=dictionary, tone_style=tone_style)
        try:
            from mmtools.text.underthesea_light import word_tokenize as load_word_tokenize

            word_tokenize = load_word_tokenize()  # not all of underthesea: that imports transformers
        except ImportError as error:
            raise MissingDependencyError(
                "the underthesea back end needs the underthesea package; run: pip install underthesea",
                hint="pip install underthesea",
            ) from error
        self._word_tokenize = word_tokenize

    def _backend_words(self, text: str) -> list[str]:
        # The list form keeps syllables apart with spaces, so a literal "_" in the text stays unambiguous.
        # The text is already normalised (NFC, one tone style): skip underthesea's own pass over it.
        return self._word_tokenize(text, use_token_normalize=False)


class PyviSegmenter(Segmenter):
    name = "pyvi"

    def __init__(self, *, dictionary: Iterable[str] | None = None, tone_style: str = DEFAULT_TONE_STYLE):
        super().__init__(dictionary=dictionary, tone_style=tone_style)
        try:
            from pyvi import ViTokenizer
        except ImportError as error:
            raise MissingDependencyError(
                "the pyvi back end needs the pyvi package, which is not installed; run: pip install pyvi",
                hint="pip install pyvi",
            ) from error
        self._tokenize = ViTokenizer.tokenize

    def _backend_words(self, text: str) -> list[str]:
        return self._tokenize(text).split()


# One VnCoreNLP per directory and process: the JVM starts once and its class path cannot change afterwards.
_vncorenlp_models: dict[str, object] = {}


class VnCoreNLPSegmenter(Segmenter):
    name = "vncorenlp"
    fork_safe = False  # a forked child cannot use the parent's JVM

    def __init__(
        self,
        vncorenlp_dir: str | os.PathLike | None = None,
        *,
        dictionary: Iterable[str] | None = None,
        tone_style: str = DEFAULT_TONE_STYLE,
    ):
        super().__init__(dictionary=dictionary, tone_style=tone_style)
        directory = check_vncorenlp(vncorenlp_dir)
        self.vncorenlp_dir = str(directory)
        self._model = _load_vncorenlp(directory)

    def _backend_words(self, text: str) -> list[str]:
        sentences = self._model.word_segment(text)
        if isinstance(sentences, str):  # py_vncorenlp before 1.2 returned one string
            sentences = [sentences]
        return " ".join(sentences).split()


def check_vncorenlp(vncorenlp_dir: str | os.PathLike | None) -> Path:
    """The absolute VnCoreNLP directory, after checking everything VnCoreNLP needs except py_vncorenlp."""
    if vncorenlp_dir is None:
        vncorenlp_dir = os.environ.get(VNCORENLP_DIR_VARIABLE) or None
    if vncorenlp_dir is None:
        raise MissingDependencyError(
            f"the vncorenlp back end needs the VnCoreNLP directory: pass its path or set {VNCORENLP_DIR_VARIABLE}",
            hint=f"download {VNCORENLP_JAR} and models/wordsegmenter/ from {VNCORENLP_URL} into one directory",
        )
    directory = Path(vncorenlp_dir).expanduser().resolve()
    missing = [name for name in (VNCORENLP_JAR, *VNCORENLP_MODEL_FILES) if not (directory / name).is_file()]
    if missing:
        raise MissingDependencyError(
            f"VnCoreNLP is not installed in {directory} (missing: {', '.join(missing)}); "
            f"download VnCoreNLP into {directory}: {VNCORENLP_JAR} and models/wordsegmenter/ from {VNCORENLP_URL}",
            hint=f"git clone --depth 1 {VNCORENLP_URL} {directory}",
        )
    if shutil.which("java") is None:
        raise MissingDependencyError(
            "the vncorenlp back end needs Java and no `java` is on PATH; install Java 17+ "
            "(e.g. apt install openjdk-17-jre-headless) or put it on PATH",
            hint="install Java 17+ and check that `java -version` works",
        )
    return directory


def _load_vncorenlp(directory: Path):
    key = str(directory)
    if key in _vncorenlp_models:
        return _vncorenlp_models[key]
    try:
        import py_vncorenlp
    except ImportError as error:
        raise MissingDependencyError(
            "the vncorenlp back end needs the py_vncorenlp package; run: pip install py_vncorenlp",
            hint="pip install py_vncorenlp",
        ) from error
    # py_vncorenlp changes the working directory so that Java finds models/ by relative path, and does not
    # change it back: restore it whatever happens.
    working_dir = os.getcwd()
    try:
        model = py_vncorenlp.VnCoreNLP(annotators=["wseg"], save_dir=key)
    finally:
        os.chdir(working_dir)
    _vncorenlp_models[key] = model
    return model
