"""The GPU path's logic, checked on the CPU with fakes (the CUDA parts themselves need a GPU machine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtools import gpu


def test_batch_size_is_the_largest_power_of_two_that_fits():
    mib = 2**20
    assert gpu.choose_batch_size(1000 * mib, 10 * mib) == 64  # 0.7 * 1000 / 10 = 70 -> 64
    assert gpu.choose_batch_size(80_000 * mib, 10 * mib) == gpu.MAX_AUTO_BATCH
    assert gpu.choose_batch_size(5 * mib, 10 * mib) == 1  # never zero
    assert gpu.choose_batch_size(100 * mib, 0) == gpu.MAX_AUTO_BATCH


def test_out_of_memory_is_recognised():
    assert gpu.is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert gpu.is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert not gpu.is_out_of_memory(RuntimeError("shape mismatch"))
    assert not gpu.is_out_of_memory(ValueError("out of memory"))


def _fake_encoder(fits: int, calls: list):
    def encode(batch):
        size = gpu.batch_length(batch)
        calls.append(size)
        if size > fits:
            raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB")
        return batch["pixel_values"][:, :2].numpy() * 2
    return encode


def test_a_batch_that_runs_out_of_memory_is_halved_and_later_batches_keep_the_size():
    calls: list[int] = []
    shrinks: list[int] = []
    fallback = gpu.OomFallback(on_shrink=shrinks.append)
    batch = {"pixel_values": torch.arange(32 * 3, dtype=torch.float32).reshape(32, 3)}
    out = fallback(_fake_encoder(fits=8, calls=calls), batch)
    assert np.array_equal(out, batch["pixel_values"][:, :2].numpy() * 2)  # every row, in order
    assert calls[0] == 32 and max(calls[calls.index(8):]) == 8 and fallback.limit == 8
    calls.clear()
    fallback(_fake_encoder(fits=8, calls=calls), {"pixel_values": torch.zeros(20, 3)})
    assert calls == [8, 8, 4]  # cut up front, no new failure
    assert shrinks == [16, 8]


def test_other_errors_and_single_items_that_do_not_fit_are_raised():
    fallback = gpu.OomFallback()
    with pytest.raises(RuntimeError, match="out of memory"):
        fallback(_fake_encoder(fits=0, calls=[]), {"pixel_values": torch.zeros(4, 3)})

    def broken(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape"):
        fallback(broken, {"pixel_values": torch.zeros(4, 3)})


def test_off_cuda_nothing_changes():
    class CpuEncoder:
        device = "cpu"
        image_size = 224
        _fast_images = object()

    batch = {"pixel_values": torch.zeros(2, 3)}
    assert gpu.stage(batch, "cpu") is batch
    assert gpu.auto_image_batch_size(CpuEncoder(), default=32) == 32
    assert gpu.jpeg_decoder(CpuEncoder()) is None
    with gpu.autocast("cpu"):
        pass


def test_faiss_stays_on_the_cpu_without_gpus():
    import faiss

    index = faiss.IndexFlatIP(4)
    assert gpu.gpu_search_index(index) is index


def test_embed_images_on_cpu_is_unchanged_by_the_gpu_hooks(photos, siglip_dir):
    from mmtools.embed import embed_images
    from mmtools.images import discover_images
    from mmtools.models import load_encoder

    encoder = load_encoder(siglip_dir, "cpu")
    auto = list(embed_images(discover_images([str(photos)]), encoder, batch_size=None))
    fixed = list(embed_images(discover_images([str(photos)]), encoder, batch_size=3))
    assert [r["id"] for r in auto] == [r["id"] for r in fixed] and len(auto) == 8
