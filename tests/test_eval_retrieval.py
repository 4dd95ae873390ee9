"""Recall@K and ranks on hand-made embeddings whose answers are known."""

import numpy as np
import pytest

from mmtools.evaluate.retrieval import RetrievalSet, chance_recall, recall_curve, retrieval_metrics
from mmtools.fusion import fuse_score_blocks


def basis(n, dim=None):
    return np.eye(dim or n, dtype=np.float32)[:n]


def test_perfect_model_scores_100():
    images = basis(4)
    report = retrieval_metrics(RetrievalSet(images, images.copy(), [0, 1, 2, 3]))
    assert report["t2i"] == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "median_rank": 1.0, "mean_rank": 1.0}
    assert report["i2t"]["R@1"] == 100.0
    assert (report["images"], report["texts"], report["mean_recall"]) == (4, 4, 100.0)


def test_known_ranks_with_several_captions_per_image():
    # 3 images on axes 0..2; 5 captions: image 0 has two, one right (rank 1) and one pointing at image 1.
    images = basis(3)
    texts = np.array([
        [1, 0, 0],      # caption of image 0 -> rank 1
        [0.2, 1, 0],    # caption of image 0 but closer to image 1 -> rank 2
        [0, 1, 0],      # image 1 -> rank 1
        [0, 0.9, 0.5],  # image 2, but image 1 scores higher -> rank 2
        [0.5, 0.4, 0.3],  # image 2, scores 0.3 < 0.5, 0.4 -> rank 3
    ], dtype=np.float32)
    report = retrieval_metrics(RetrievalSet(images, texts, [0, 0, 1, 2, 2]), ks=(1, 2))
    assert report["t2i"]["R@1"] == 40.0  # 2 of 5 at rank 1
    assert report["t2i"]["R@2"] == 80.0  # all but the last
    assert report["t2i"]["median_rank"] == 2.0
    assert report["t2i"]["mean_rank"] == pytest.approx((1 + 2 + 1 + 2 + 3) / 5)
    # image -> text, best own caption: image 0: text 0 (rank 1); image 1: text 2 scores 1.0 but so does
    # text 1 (image 0's), a tie that counts against -> rank 2; image 2: text 3 (0.5), nothing above -> rank 1.
    assert report["i2t"]["R@1"] == pytest.approx(66.67)
    assert report["i2t"]["mean_rank"] == pytest.approx((1 + 2 + 1) / 3, abs=0.01)
    assert (report["images"], report["texts"]) == (3, 5)


def test_other_captions_of_the_same_image_do_not_push_it_down():
    images = basis(2)
    texts = np.array([[1, 0], [0.9, 0], [0.8, 0], [0, 1]], dtype=np.float32)  # three captions of image 0
    report = retrieval_metrics(RetrievalSet(images, texts, [0, 0, 0, 1]))
    assert report["i2t"]["R@1"] == 100.0


def test_constant_vectors_score_at_chance_not_100():
    images = np.ones((20, 4), dtype=np.float32) / 2
    texts = np.ones((20, 4), dtype=np.float32) / 2
    report = retrieval_metrics(RetrievalSet(images, texts, list(range(20))))
    assert report["t2i"]["R@1"] == 0.0 and report["t2i"]["median_rank"] == 20.0  # ties count against
    assert chance_recall(20, 5) == 25.0


def test_recall_curve_is_monotone_and_reaches_100():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(30, 8)).astype(np.float32)
    texts = images + rng.normal(scale=1.0, size=images.shape).astype(np.float32)
    curve = recall_curve(RetrievalSet(images, texts, list(range(30))), max_k=30)
    values = [curve[k] for k in range(1, 31)]
    assert values == sorted(values) and values[-1] == 100.0


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        RetrievalSet(basis(3), basis(3, 4), [0, 1, 2])
    with pytest.raises(ValueError, match="does not exist"):
        RetrievalSet(basis(3), basis(3), [0, 1, 5])


def scores_from_orders(orders):
    """Score rows that rank candidates in the given orders (best first)."""
    scores = np.zeros((len(orders), len(orders[0])))
    for row, order in enumerate(orders):
        scores[row, order] = np.arange(len(order), 0, -1)
    return scores


def test_fusion_of_two_complementary_models_beats_each():
    # Model A is right on queries 0-1, B on 2-3; where one fails it ranks the right image second, and the
    # wrong image it puts first is ranked low by the other. Fusion puts the right image first every time.
    a = scores_from_orders([[0, 1, 2, 3], [1, 0, 2, 3], [3, 2, 0, 1], [0, 3, 1, 2]])
    b = scores_from_orders([[2, 0, 3, 1], [3, 1, 2, 0], [2, 1, 0, 3], [3, 2, 1, 0]])
    truth = np.arange(4)

    def r1(scores):
        return float((scores.argmax(axis=1) == truth).mean())

    assert r1(a) == 0.5 and r1(b) == 0.5
    assert r1(fuse_score_blocks([a, b])) == 1.0
    assert r1(fuse_score_blocks([a, b], weights=[1.0, 0.0])) == r1(a)  # weight 0: the other model alone
    assert r1(fuse_score_blocks([a, b], weights=[1.0, 1.0])) == 1.0  # weighted normalised scores


def test_non_finite_vectors_get_the_worst_rank_not_rank_0():
    # A model that overflowed (fp16 on a GPU) gives NaN vectors: they must not read as perfect recall.
    images = basis(5)
    texts = basis(5).copy()
    texts[:] = np.nan
    report = retrieval_metrics(RetrievalSet(images, texts, list(range(5))))
    assert report["t2i"]["R@1"] == 0.0 and report["t2i"]["median_rank"] == 5.0
    assert report["i2t"]["R@1"] == 0.0 and report["i2t"]["median_rank"] == 5.0
    images[2] = np.nan  # one NaN image among good ones: only its own queries suffer
    report = retrieval_metrics(RetrievalSet(images, basis(5), list(range(5))))
    assert report["t2i"]["R@1"] == 80.0


def test_a_constant_model_fused_with_itself_scores_like_itself():
    from mmtools.evaluate.retrieval import fused_metrics

    constant = RetrievalSet(np.ones((20, 4), np.float32) / 2, np.ones((20, 4), np.float32) / 2, list(range(20)))
    alone = retrieval_metrics(constant)
    for weights in (None, [1.0, 1.0]):
        fused, _ = fused_metrics([constant, constant], weights)
        assert fused["t2i"] == alone["t2i"] and fused["t2i"]["R@5"] == 0.0  # no tie broken by row order
        assert fused["i2t"]["R@5"] == 0.0


def test_rrf_gives_tied_candidates_their_worst_rank():
    from mmtools.evaluate.ranks import tied_worst_ranks
    from mmtools.fusion import RRF_K

    block = np.array([[0.5, 0.9, 0.5, 0.1, np.nan]])
    assert tied_worst_ranks(block).tolist() == [[3, 1, 3, 4, 5]]
    fused = fuse_score_blocks([block, block])
    assert fused[0, 0] == fused[0, 2] == pytest.approx(2 / (RRF_K + 3))


class _Export:
    def __init__(self, int8_ok=True):
        self.int8_text_ok = int8_ok

    def has(self, tower, int8=False):
        return self.int8_text_ok


class _Encoder:
    """An ONNX-like encoder: text vectors depend on the tower (int8 or fp32); images are fixed."""

    name, image_size = "fake", None

    def __init__(self, int8_queries=True, int8_ok=True, text_int8=False):
        self.int8_queries, self.export, self.text_int8 = int8_queries, _Export(int8_ok), text_int8
        self.precision = f"text {'int8' if text_int8 else 'fp32'}, image int8"

    def variant(self, text_int8=None):
        return _Encoder(self.int8_queries, self.export.int8_text_ok, text_int8)

    def encode_images(self, images):  # image i is drawn in red i
        return basis(10)[[image.getpixel((0, 0))[0] for image in images]]

    def encode_texts(self, texts):
        rows = basis(10)[[int(t) for t in texts]]
        return rows if self.text_int8 else rows[::-1].copy()


def test_captions_take_the_int8_text_tower_only_where_it_agrees_on_the_images(monkeypatch, tmp_path):
    import mmtools.models.agreement as agreement
    from mmtools.evaluate.retrieval import encode_examples
    from mmtools.train.data import Example

    from PIL import Image

    paths = []
    for i in range(10):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (8, 8), (i, 0, 0)).save(paths[-1])
    examples = [Example(id=str(i), image=str(p), texts=[str(i)], where=f"line {i}") for i, p in enumerate(paths)]
    measured = []

    def measure(encoder, corpus, ok=True):
        measured.append(corpus.shape)
        return {"ok": ok}

    monkeypatch.setattr(agreement, "measure_agreement", measure)
    int8 = encode_examples(_Encoder(), examples, batch_size=4)
    assert measured == [(10, 10)]  # measured once, on every image's vector
    assert int8.precision == "text int8, image int8" and retrieval_metrics(int8)["t2i"]["R@1"] == 100.0
    monkeypatch.setattr(agreement, "measure_agreement", lambda encoder, corpus: {"ok": False})
    fp32 = encode_examples(_Encoder(), examples, batch_size=4)
    assert fp32.precision == "text fp32, image int8" and retrieval_metrics(fp32)["t2i"]["R@1"] < 100.0
    for encoder in (_Encoder(int8_queries=False), _Encoder(int8_ok=False)):  # onnx-fp32, or probes failed
        measured.clear()
        monkeypatch.setattr(agreement, "measure_agreement", measure)
        assert encode_examples(encoder, examples, batch_size=4).precision == "text fp32, image int8"
        assert measured == []
