"""The fast preprocessing path gives the Hugging Face processors' tensors."""

import numpy as np
import pytest
from PIL import Image

from mmtools.images import load_image
from mmtools.models.image_preprocess import FastImagePreprocessor


def processors():
    from transformers import CLIPImageProcessorPil, SiglipImageProcessorPil

    return {
        "siglip-224": SiglipImageProcessorPil(size={"height": 224, "width": 224}),
        "clip-224": CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
        "clip-odd": CLIPImageProcessorPil(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 36}),
    }


@pytest.mark.parametrize("name", ["siglip-224", "clip-224", "clip-odd"])
def test_fast_path_matches_the_processor(name, photos):
    processor = processors()[name]
    fast = FastImagePreprocessor.from_processor(processor)
    assert fast is not None
    images = [load_image(str(p)) for p in sorted(photos.rglob("*.jpg"))[:4]]
    images += [Image.new("RGB", (301, 97), (10, 200, 30)), Image.new("RGB", (50, 700), (250, 0, 99))]
    expected = processor(images=images, return_tensors="pt")["pixel_values"].numpy()
    got = fast(images)["pixel_values"].numpy()
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-4


def test_unknown_processors_are_left_to_transformers():
    class OtherProcessor:
        pass

    assert FastImagePreprocessor.from_processor(OtherProcessor()) is None
