#!/usr/bin/env bash
# Offline demonstration of train retrieval: no hub, no downloads, a few minutes on 2 CPU cores.
#
#   examples/offline-demo.sh [WORKDIR] [TRAIN_IMAGES] [EPOCHS]
#
# 1. generates coloured shapes with Vietnamese captions ("một hình tròn màu đỏ nhỏ ở bên trái, trên nền
#    trắng"): a training, a validation and a held-out test set;
# 2. builds tiny random starting points whose tokenizers know those words: a CLIP, and two single towers
#    (PhoBERT-style RoBERTa + ResNet);
# 3. trains both from scratch with `mmtools train retrieval`;
# 4. evaluates each trained model beside its untrained self on the held-out set (`mmtools eval retrieval`),
#    with Recall@K curves in WORKDIR/recall-*.png;
# 5. indexes the test images with the trained CLIP and searches them.
set -euo pipefail
work=${1:-mmtools-demo}
train_images=${2:-600}
epochs=${3:-10}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
python=${PYTHON:-python}
mmtools=${MMTOOLS:-mmtools}
mkdir -p "$work"
cd "$work"

"$python" - "$train_images" <<'PY'
import sys
from mmtools.train.demo import build_starting_points, make_shapes
make_shapes(".", int(sys.argv[1]), seed=0, name="train.jsonl")
make_shapes(".", 100, seed=1, name="val.jsonl")
make_shapes(".", 100, seed=2, name="test.jsonl")
build_starting_points("models")
PY

# A tiny CLIP from scratch (lr 2e-3 for every part: nothing is pretrained here).
"$mmtools" train retrieval -d train.jsonl --val val.jsonl --base models/clip-tiny -o clip-run \
    --epochs "$epochs" --lr-image 2e-3 --lr-text 2e-3 --lr-heads 2e-3 --warmup 0.1 --patience 0 \
    --metrics clip-metrics.jsonl
"$mmtools" eval retrieval -d test.jsonl -m clip-run -m models/clip-tiny --plot recall-clip.png | tee eval-clip.json

# Two tiny towers, PhoBERT-style text (word-segmented captions) + ResNet, joined with projection heads.
"$mmtools" train retrieval -d train.jsonl --val val.jsonl --text-encoder models/phobert-tiny \
    --image-encoder models/resnet-tiny --projection-dim 64 -o towers-run --epochs "$epochs" \
    --lr-image 3e-3 --lr-text 3e-3 --lr-heads 3e-3 --warmup 0.1 --patience 0 --metrics towers-metrics.jsonl
"$python" -c "
from mmtools.train.retrieval import ModelOptions, save_untrained
save_untrained(ModelOptions(text_encoder='models/phobert-tiny', image_encoder='models/resnet-tiny',
                            projection_dim=64), 'towers-untrained')"
"$mmtools" eval retrieval -d test.jsonl -m towers-run -m towers-untrained --plot recall-towers.png \
    | tee eval-towers.json

# The trained model is an ordinary model: index the test images, search them in Vietnamese.
"$mmtools" embed-images test.jsonl -m clip-run | "$mmtools" index -o test.faiss
"$mmtools" search "hình tròn màu đỏ" -i test.faiss -k 5
