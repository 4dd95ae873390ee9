"""Run one index update and end the process (os._exit, like kill -9) right after its Nth effect on disk.

Usage: python crash_writer.py INDEX KIND N [kill] [merge]

With ``merge``, segments hold 50 vectors and the update is a --compact one, so the write also merges the
segments it wrote into one.

Effects counted: every rename, link, unlink and fsync, each FAISS file write, and the SQLite commit of a
segmented index (``mmtools.index.writer.commit_transaction``). The test calls this with
N = 1, 2, ... until a run finishes without reaching N, and checks the index after each one. It builds records
from random vectors (seed 1, marked "new"), so it never loads a model.
"""

import os
import signal
import sys

import faiss
import numpy as np

index_path, kind, stop_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
hard_kill = "kill" in sys.argv[4:]
merge = "merge" in sys.argv[4:]
count = 0


def counted(function):
    def wrapper(*args, **kwargs):
        global count
        result = function(*args, **kwargs)
        count += 1
        if count == stop_at:
            if hard_kill:
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(99)
        return result
    return wrapper


for name in ("replace", "rename", "link", "unlink", "fsync"):
    setattr(os, name, counted(getattr(os, name)))
faiss.write_index = counted(faiss.write_index)

sys.path.insert(0, os.path.dirname(__file__))
from states import generation_records  # noqa: E402

import mmtools.index.writer  # noqa: E402
from mmtools.index import index_records  # noqa: E402

mmtools.index.writer.commit_transaction = counted(mmtools.index.writer.commit_transaction)
if merge:
    from mmtools.index import merging  # noqa: E402

    merging.segment_limit = lambda dim: 50

index_records(generation_records("new"), index_path, compact=merge)
sys.exit(0)
