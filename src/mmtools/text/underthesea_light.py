"""underthesea's word segmenter without the rest of underthesea.

``import underthesea`` runs its package ``__init__``, which imports every pipeline eagerly, translation
included, and so transformers (3 s on an idle machine, far more on a busy one): a one-line ``segment`` would
spend nearly all its time there. ``word_tokenize`` imports only ``underthesea.pipeline.word_tokenize`` under
a stand-in package whose ``__init__`` runs the first time anything else of underthesea is asked for (module
``__getattr__``), so other code that imports underthesea later still gets all of it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def word_tokenize():
    """underthesea's ``word_tokenize`` function (ImportError when underthesea is not installed)."""
    if "underthesea" not in sys.modules:
        spec = importlib.util.find_spec("underthesea")
        if spec is None or spec.loader is None:
            raise ImportError("No module named 'underthesea'")
        package = importlib.util.module_from_spec(spec)

        def load_the_rest(name: str):
            if name.startswith("__"):  # what the import system probes for: not a reason to load everything
                raise AttributeError(name)
            del package.__dict__["__getattr__"]
            spec.loader.exec_module(package)
            return getattr(package, name)

        package.__getattr__ = load_the_rest
        sys.modules["underthesea"] = package
    importlib.import_module("underthesea.pipeline.text_normalize")  # first, as underthesea's __init__ does:
    return importlib.import_module("underthesea.pipeline.word_tokenize").word_tokenize  # the two import each other
