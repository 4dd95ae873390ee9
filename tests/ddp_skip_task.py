"""Run under torchrun by the tests: on rank 1 every third batch collates to nothing (its images failed to
load); the ranks must agree to skip it instead of one waiting for the other in a collective for ever."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from engine_task import BlobTask, blobs  # noqa: E402

from mmtools.train.engine import TrainConfig, Trainer  # noqa: E402


class SometimesEmpty(BlobTask):
    def __init__(self, val):
        super().__init__(val)
        self.calls = 0

    def collate(self, items):
        self.calls += 1
        if os.environ.get("RANK") == "1" and self.calls % 3 == 0:
            return None
        return super().collate(items)


if __name__ == "__main__":
    output = Path(sys.argv[1])
    config = TrainConfig(epochs=2, batch_size=8, grad_accum=2, workers=0, patience=None, monitor="accuracy",
                         device="cpu")
    result = Trainer(SometimesEmpty(blobs(50, 1)), blobs(96, 0), config, output).fit()
    # one write of a whole line (atomic on a pipe), so the two ranks' lines never interleave
    os.write(1, (json.dumps({"rank": os.environ.get("RANK"), "epochs": result.epochs_run}) + "\n").encode())
