"""mmtools duplicates on generated copies of the shared photos: originals found with both copies, groups that
mix distinct photos, beside two plain baselines measured in the same run.

    python benchmarks/duplicates.py [--originals 15] [--others 45] [--offset 300] [--architecture siglip-tiny]

From ../shared/data/vi-photos/images: ``--originals`` photos each get two copies (mmtools.duplicates.copies:
shrunk to 60% and saved at JPEG quality 40; cut 5–8% smaller on each axis and saved at quality 85), and
``--others`` further distinct photos stand beside them, plus the one pair of *different* photos of one
scene the shared set holds (0001201 and 0002381: one tennis serve, a moment apart), which must not group.
(0000515 is left out: it is the very same picture as 0000229 in the shared set.) Everything runs through the
real CLI: ``embed-images | index`` then ``duplicates``.

No model that really sees images can be had offline here, so the vectors come from a randomly initialised
model (``--architecture``): the vector stage is a candidate generator at a generous threshold, and the
perceptual hashes decide. Baselines: the same candidates grouped on vectors alone (no hash check), and a
plain whole-photo pHash (Hamming distance ≤ 10, the usual rule of thumb) without crop alignment.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from common import REPO, Row, machine, print_table, shared_data

PHOTOS = shared_data("vi-photos", "images")
SAME_SCENE = ("0001201.jpg", "0002381.jpg")
SAME_PICTURE_IN_DATA = ("0000515.jpg",)


def cli(*args: str, stdin: bytes | None = None, cwd: Path) -> bytes:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "MMTOOLS_CACHE_DIR": str(cwd / "cache")}
    result = subprocess.run([sys.executable, "-m", "mmtools", *args], input=stdin, cwd=cwd, env=env,
                            capture_output=True)
    if result.stderr:
        sys.stderr.write(result.stderr.decode())
    if result.returncode not in (0, 1):
        raise SystemExit(f"mmtools {' '.join(args)} failed:\n{result.stderr.decode()}")
    return result.stdout


def groups_of(pairs, items):
    parent = {item: item for item in items}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for a, b in pairs:
        parent[find(a)] = find(b)
    groups = {}
    for item in items:
        groups.setdefault(find(item), set()).add(item)
    return [g for g in groups.values() if len(g) > 1]


def score(groups: list[set[str]], source: dict[str, str], originals: list[str]) -> tuple[int, int]:
    """(originals grouped with exactly their two copies, groups mixing distinct photos)."""
    found = sum(1 for o in originals if any(g == {o, f"{o}-small", f"{o}-crop"} for g in groups))
    mixed = sum(1 for g in groups if len({source[m] for m in g}) > 1)
    return found, mixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=15)
    parser.add_argument("--others", type=int, default=45)
    parser.add_argument("--offset", type=int, default=300, help="first photo used (thresholds were measured "
                                                                "on photos 0-149 and all pairs)")
    parser.add_argument("--architecture", default="siglip-tiny")
    parser.add_argument("--threshold", type=float, default=None, help="[default: the command's]")
    parser.add_argument("--measure-hashes", type=int, metavar="N", default=0,
                        help="instead: the hash distances behind COARSE_BITS and FINE_BITS, for the copies of the "
                             "first N photos and for every pair of distinct photos in the shared set")
    args = parser.parse_args()
    if args.measure_hashes:
        return measure_hashes(args.measure_hashes)

    import imagehash
    import numpy as np
    from PIL import Image

    from mmtools.duplicates import DEFAULT_THRESHOLD, candidate_pairs, stored_vectors
    from mmtools.duplicates.copies import write_copies
    from mmtools.index.backends import open_reader
    from mmtools.models.synthetic import build_random_model

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    pool = [p for p in sorted(PHOTOS.glob("*.jpg")) if p.name not in SAME_SCENE + SAME_PICTURE_IN_DATA]
    chosen = pool[args.offset:args.offset + args.originals + args.others]
    work = Path(tempfile.mkdtemp(prefix="mmtools-bench-duplicates-"))
    try:
        photos = work / "photos"
        photos.mkdir()
        rng = random.Random(7)
        source: dict[str, str] = {}
        originals = []
        for n, photo in enumerate(chosen + [PHOTOS / name for name in SAME_SCENE]):
            shutil.copy(photo, photos / photo.name)
            source[photo.stem] = photo.stem
            if n < args.originals:
                originals.append(photo.stem)
                for kind, path in write_copies(photo, photos, rng).items():
                    source[path.stem] = photo.stem
        model = build_random_model(work / "model", args.architecture)
        print(f"{machine()}\n{len(source)} photos: {args.originals} originals with 2 copies each, "
              f"{args.others} other photos, 1 pair of different shots of one scene; vectors from a random "
              f"{args.architecture}")
        records = cli("-q", "embed-images", "--model", str(model), "--root", str(photos), str(photos), cwd=work)
        cli("-q", "index", "-o", str(work / "idx.faiss"), "--root", str(photos), stdin=records, cwd=work)
        started = time.perf_counter()
        out = cli("duplicates", "-i", str(work / "idx.faiss"), "--threshold", str(threshold), cwd=work)
        seconds = time.perf_counter() - started
        found_groups = [{Path(m["path"]).stem for m in orjson.loads(line)["members"]} for line in out.splitlines()]
        found, mixed = score(found_groups, source, originals)

        os.chdir(work)  # where the index's paths open from, as for the command
        with open_reader(str(work / "idx.faiss")) as reader:
            items, flat = stored_vectors(reader)
        stems = [Path(item.path).stem for item in items]
        candidates = [(stems[i], stems[j], s) for i, j, s in candidate_pairs(flat, threshold)]
        copy_cos = [s for a, b, s in candidates if source[a] == source[b]]
        vector_found, vector_mixed = score(groups_of([(a, b) for a, b, _ in candidates], stems), source, originals)
        vectors = flat.reconstruct_n(0, flat.ntotal)
        cos = vectors @ vectors.T
        same = [(i, j) for i, j in itertools.combinations(range(len(stems)), 2) if source[stems[i]] == source[stems[j]]]
        distinct = [cos[i, j] for i, j in itertools.combinations(range(len(stems)), 2)
                    if source[stems[i]] != source[stems[j]]]
        print(f"random-model cosines: copies of one photo {min(cos[i, j] for i, j in same):.3f}–"
              f"{max(cos[i, j] for i, j in same):.3f}, distinct photos {min(distinct):.3f}–{max(distinct):.3f} "
              f"(median {float(np.median(distinct)):.3f}); {len(candidates)} candidate pairs at {threshold} "
              f"({len(copy_cos)} of them copies)")

        hashes = {}
        for item, stem in zip(items, stems):
            with Image.open(item.path) as image:
                hashes[stem] = imagehash.phash(image.convert("L"))
        plain_pairs = [(a, b) for a, b in itertools.combinations(stems, 2) if hashes[a] - hashes[b] <= 10]
        plain_found, plain_mixed = score(groups_of(plain_pairs, stems), source, originals)

        n = args.originals
        rows = [
            Row("duplicates", "originals grouped with both copies, vs vectors alone", found, vector_found,
                f"of {n}", target=f"≥ {n - 1} of {n}", ok=found >= n - 1),
            Row("duplicates", "originals grouped with both copies, vs whole-photo pHash ≤ 10", found, plain_found,
                f"of {n}", target=f"≥ {n - 1} of {n}", ok=found >= n - 1),
            Row("duplicates", "groups mixing distinct photos, vs vectors alone", mixed, vector_mixed, "groups",
                higher_is_better=False, target="0", ok=mixed == 0),
            Row("duplicates", "groups mixing distinct photos, vs whole-photo pHash ≤ 10", mixed, plain_mixed,
                "groups", higher_is_better=False, target="0", ok=mixed == 0),
            Row("duplicates", "command time (index opened, hashed, grouped)", seconds, None, "s",
                higher_is_better=False),
        ]
        print_table(rows, "mmtools duplicates on generated copies (baselines: vector candidates alone; "
                          "a plain whole-photo pHash)")
    finally:
        os.chdir(REPO)
        shutil.rmtree(work, ignore_errors=True)


def measure_hashes(count: int) -> None:
    """Hash distances of copies against those of distinct photos (what the thresholds were chosen from)."""
    import numpy as np

    from mmtools.duplicates import COARSE_BITS, FINE_BITS, PhotoHashes, coarse_distance, fine_distance
    from mmtools.duplicates.copies import write_copies

    photos = [p for p in sorted(PHOTOS.glob("*.jpg")) if p.name not in SAME_PICTURE_IN_DATA]
    hashes = [PhotoHashes.of(str(p)) for p in photos]
    with tempfile.TemporaryDirectory(prefix="mmtools-bench-hashes-") as work:
        rng = random.Random(1)
        copies = {"small": [], "crop": []}
        for photo, original in zip(photos[:count], hashes):
            for kind, path in write_copies(photo, work, rng).items():
                copy = PhotoHashes.of(str(path))
                coarse, alignment = coarse_distance(original, copy)
                copies[kind].append((coarse, fine_distance(original, copy, alignment)))
    for kind, found in copies.items():
        found = np.array(found)
        print(f"{kind} copies of {count} photos: coarse bits ≤ {found[:, 0].max()} (p99 "
              f"{np.percentile(found[:, 0], 99):.0f}), fine bits ≤ {found[:, 1].max()} (p99 "
              f"{np.percentile(found[:, 1], 99):.0f})")
    phash = np.stack([h.phash for h in hashes])
    dhash = np.stack([h.dhash for h in hashes])
    # [i, j]: fewest bits between photo i cropped (any alignment) and photo j whole
    one_way = (np.bitwise_count(phash[:, None, :] ^ phash[None, :, :1]) +
               np.bitwise_count(dhash[:, None, :] ^ dhash[None, :, :1])).min(axis=2).astype(int)
    coarse = np.minimum(one_way, one_way.T)
    pairs = [(i, j) for i, j in zip(*np.triu_indices(len(photos), 1))]
    print(f"{len(pairs)} pairs of distinct photos: coarse bits, the 8 smallest: "
          f"{sorted(coarse[i, j] for i, j in pairs)[:8]}")
    for i, j in pairs:
        if coarse[i, j] <= COARSE_BITS + 10:
            _, alignment = coarse_distance(hashes[i], hashes[j])
            fine = fine_distance(hashes[i], hashes[j], alignment)
            print(f"  {photos[i].name} {photos[j].name}: coarse {coarse[i, j]}, fine {fine}"
                  f"{'  <- would group' if coarse[i, j] <= COARSE_BITS and fine <= FINE_BITS else ''}")
    print(f"thresholds in use: coarse ≤ {COARSE_BITS} of 128 bits, fine ≤ {FINE_BITS} of 256 bits")


if __name__ == "__main__":
    main()
