"""Shared by the train retrieval tests: a small synthetic captioned set and tiny starting points."""

from __future__ import annotations

from pathlib import Path


def build_demo(root: Path, train: int = 160, val: int = 40, test: int = 60) -> dict[str, Path]:
    from mmtools.train.demo import build_starting_points, make_shapes

    paths = {"train": make_shapes(root, train, seed=0, name="train.jsonl"),
             "val": make_shapes(root, val, seed=1, name="val.jsonl"),
             "test": make_shapes(root, test, seed=2, name="test.jsonl")}
    paths.update(build_starting_points(root / "models"))
    return paths
