"""Run one update of a Milvus collection and kill -9 this process right after its Nth call that changes
something on the server (create or drop a collection, upsert, delete, create or switch an alias).

Usage: python milvus_crash_writer.py LOCATION GENERATION N

It writes the 300 records of ``states.generation_records(GENERATION)`` (no model needed). With N past the
number of such calls, the update finishes and the process exits 0; the calls it made are printed on stdout.
"""

import os
import signal
import sys

import pymilvus

sys.path.insert(0, os.path.dirname(__file__))
from states import generation_records  # noqa: E402

from mmtools.index import index_records  # noqa: E402

location, generation, stop_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = 0
CHANGES = ("create_collection", "drop_collection", "upsert", "insert", "delete", "create_alias", "alter_alias")


def counted(name, function):
    def wrapper(*args, **kwargs):
        global count
        result = function(*args, **kwargs)
        count += 1
        print(name, flush=True)
        if count == stop_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapper


for name in CHANGES:
    setattr(pymilvus.MilvusClient, name, counted(name, getattr(pymilvus.MilvusClient, name)))

index_records(generation_records(generation), location, lock_timeout=60)
