"""train retrieval, library side: losses, parameter groups, freezing, LoRA, saved model directories, and
learning (held-out Recall far above chance and above the untrained model)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import build_demo  # noqa: E402

from mmtools.errors import ModelError, UsageError
from mmtools.models import ModelCache
from mmtools.train.engine import TrainConfig
from mmtools.train.retrieval import (ModelOptions, RetrievalTask, build_model, contrastive_loss, load_pairs,
                                     save_untrained, train_retrieval)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"))


def towers(demo, **extra):
    return ModelOptions(text_encoder=str(demo["text"]), image_encoder=str(demo["image"]), projection_dim=32,
                        **extra)


def test_losses_prefer_matching_pairs():
    torch.manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    scale, bias = torch.tensor(10.0), torch.tensor(-5.0)
    for kind in ("infonce", "sigmoid"):
        matched = contrastive_loss(images, images.clone(), scale, bias, kind)
        shuffled = contrastive_loss(images, images.roll(1, 0), scale, bias, kind)
        assert matched < shuffled, kind


def test_two_tower_parts_learn_at_their_own_rates(demo):
    built = build_model(towers(demo))
    task = RetrievalTask(built, towers(demo))
    groups = {g["name"]: g for g in task.param_groups()}
    assert {name: g["lr"] for name, g in groups.items()} == {"image": 1e-4, "text": 1e-5, "heads": 1e-3}
    heads = {id(p) for p in groups["heads"]["params"]}
    assert id(built.model.inner.logit_scale) in heads
    assert built.model.inner.logit_scale.exp().item() == pytest.approx(1 / 0.07)  # temperature 0.07
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(built.model.parameters()))
    assert task.trainable_groups() is None
    assert RetrievalTask(built, towers(demo, freeze="image")).trainable_groups() == {"text", "heads"}


def test_clip_base_groups_and_siglip_gets_the_sigmoid_loss(demo, siglip_dir):
    clip = build_model(ModelOptions(base=str(demo["clip"])))
    names = {g["name"]: len(g["params"]) for g in RetrievalTask(clip, ModelOptions(base="x")).param_groups()}
    assert set(names) == {"image", "text", "heads"} and clip.loss == "infonce"
    siglip = build_model(ModelOptions(base=siglip_dir))
    assert siglip.loss == "sigmoid" and siglip.text_rules.attention_mask is False
    batch = RetrievalTask(siglip, ModelOptions(base="x")).tokenize(["một con mèo", "xe"])
    assert set(batch) == {"input_ids"}  # SigLIP learns without the mask, as it encodes


def test_options_that_cannot_work_are_refused(demo, tmp_path):
    with pytest.raises(UsageError, match="not both"):
        ModelOptions(base="x", text_encoder="y").check()
    with pytest.raises(UsageError, match="no model to train"):
        ModelOptions(text_encoder="y").check()
    with pytest.raises(ModelError, match="not a single image tower|dual encoder"):
        build_model(ModelOptions(text_encoder=str(demo["text"]), image_encoder=str(demo["clip"])))
    with pytest.raises(ModelError, match="not a vision model"):
        build_model(ModelOptions(text_encoder=str(demo["text"]), image_encoder=str(demo["text"])))
    with pytest.raises(ModelError, match="is a 'roberta' model"):  # a single tower is no --base
        build_model(ModelOptions(base=str(demo["text"])))


def test_freezing_a_tower_keeps_its_weights(demo, tmp_path):
    examples = load_pairs(demo["train"], "training data")[:64]
    before = build_model(towers(demo)).model.inner.image_model.state_dict()
    config = TrainConfig(epochs=1, batch_size=16, workers=0, device="cpu", patience=None)
    train_retrieval(examples, [], towers(demo, freeze="image"), config, tmp_path / "run")
    encoder = ModelCache().get(str(tmp_path / "run"), "cpu", "torch")  # its weights: a PyTorch encoder's
    after = encoder.model.image_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "num_batches" not in k)
    assert not torch.equal(build_model(towers(demo)).model.inner.text_projection.projection.weight,
                           encoder.model.text_projection.projection.weight)


def test_lora_adapters_are_merged_into_saved_weights_and_kept_on_request(demo, tmp_path):
    pytest.importorskip("peft")
    examples = load_pairs(demo["train"], "training data")[:64]
    config = TrainConfig(epochs=1, batch_size=16, workers=0, device="cpu", patience=None)
    options = ModelOptions(base=str(demo["clip"]), lora=True, lora_keep_adapters=True, lr_text=1e-2,
                           lr_image=1e-2)
    train_retrieval(examples, [], options, config, tmp_path / "run")
    model_dir = tmp_path / "run" / "model"
    assert (model_dir / "adapters" / "adapter_model.safetensors").exists()
    from safetensors.torch import load_file

    saved = load_file(str(model_dir / "model.safetensors"))
    assert not any("lora_" in key for key in saved)  # merged: a plain CLIP checkpoint
    base = load_file(str(Path(demo["clip"]) / "model.safetensors"))
    key = next(k for k in saved if k.endswith("q_proj.weight") and "text_model" in k)
    assert not torch.equal(saved[key], base[key])  # the adapter's update is in the weights
    vectors = ModelCache().get(str(tmp_path / "run"), "cpu").encode_texts(["hình tròn đỏ"])
    assert vectors.shape == (1, 32) and np.isfinite(vectors).all()


@pytest.mark.slow
@pytest.mark.parametrize("start", ["clip", "towers"])
def test_training_from_scratch_learns(demo, tmp_path, start):
    """Held-out Recall@5 far above chance, and above the same model untrained."""
    from mmtools.evaluate.report import evaluate_retrieval

    train = load_pairs(demo["train"], "training data")
    if start == "clip":
        options = ModelOptions(base=str(demo["clip"]), lr_image=2e-3, lr_text=2e-3, lr_heads=2e-3)
        untrained = str(demo["clip"])
    else:
        options = towers(demo, lr_image=3e-3, lr_text=3e-3, lr_heads=3e-3)
        untrained = str(save_untrained(options, tmp_path / "untrained"))
    config = TrainConfig(epochs=8, batch_size=32, workers=0, device="cpu", patience=None, warmup=0.1)
    train_retrieval(train, [], options, config, tmp_path / "run")
    report = evaluate_retrieval(data=str(demo["test"]), models=[str(tmp_path / "run"), untrained], images=[],
                                texts=[])
    trained, baseline = (r["t2i"]["R@5"] for r in report["results"])
    chance = report["chance"]["R@5"]  # 60 test images: 8.33
    assert trained >= 3 * chance, report
    assert trained >= baseline + 10, report


def test_a_two_tower_model_loads_without_its_source_towers(demo, tmp_path):
    import shutil

    text, image = shutil.copytree(demo["text"], tmp_path / "t"), shutil.copytree(demo["image"], tmp_path / "i")
    options = ModelOptions(text_encoder=str(text), image_encoder=str(image), projection_dim=16)
    model_dir = save_untrained(options, tmp_path / "model")
    shutil.rmtree(text), shutil.rmtree(image)  # the model keeps its towers' configs and tokenizer inside
    encoder = ModelCache().get(str(model_dir), "cpu")
    assert encoder.family == "two-tower" and encoder.dim == 16
    assert encoder.encode_texts(["xe hơi màu đỏ"]).shape == (1, 16)
    assert encoder.text_rules.segment and encoder.text_rules.max_length == 256
    fingerprint = encoder.fingerprint
    moved = tmp_path / "moved"
    model_dir.rename(moved)
    assert ModelCache().get(str(moved), "cpu").fingerprint == fingerprint  # identity survives a move


def test_siglip_fine_tunes_with_the_sigmoid_loss_and_no_mask(demo, siglip_dir, tmp_path):
    from mmtools.train.retrieval import evaluate_model, prepare_texts

    examples = load_pairs(demo["train"], "training data")[:32]
    config = TrainConfig(epochs=1, batch_size=16, workers=0, device="cpu", patience=None)
    result = train_retrieval(examples, examples[:8], ModelOptions(base=siglip_dir), config, tmp_path / "run")
    assert "val_mean_recall" in result.best_metrics
    manifest = json.loads((tmp_path / "run" / "model" / "mmtools.json").read_text())
    assert manifest["family"] == "hf-dual-encoder" and manifest["loss"] == "sigmoid"
    assert manifest["text"]["attention_mask"] is False and manifest["text"]["lowercase"] is True
    # what training measured is what the saved model gives through the ordinary encoder
    encoder = ModelCache().get(str(tmp_path / "run"), "cpu")
    built = build_model(ModelOptions(base=str(tmp_path / "run")))
    task = RetrievalTask(built, ModelOptions(base="x"))
    direct = evaluate_model(built.model, task, prepare_texts(examples[:8], built.text_rules))
    from mmtools.evaluate.retrieval import encode_examples, retrieval_metrics

    assert retrieval_metrics(encode_examples(encoder, examples[:8]))["t2i"] == direct["t2i"]


def test_an_fp16_base_trains_in_fp32_with_a_finite_loss(demo, clip_dir, tmp_path):
    # A checkpoint saved in fp16 (common on the hub) used to train in fp16 and go NaN even on a CPU.
    import shutil

    from transformers import AutoModel

    half = tmp_path / "clip-fp16"
    shutil.copytree(clip_dir, half)
    AutoModel.from_pretrained(clip_dir).half().save_pretrained(half)
    examples = load_pairs(demo["train"], "training data")[:32]
    config = TrainConfig(epochs=1, batch_size=8, workers=0, device="cpu", patience=None, precision="fp32")
    result = train_retrieval(examples, examples[:8], ModelOptions(base=str(half)), config, tmp_path / "run")
    assert np.isfinite(result.best_metrics["train_loss"])
    assert result.best_metrics["val_mean_recall"] >= 0
