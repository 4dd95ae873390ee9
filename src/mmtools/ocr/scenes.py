"""Photos with Vietnamese text drawn the hard way, and how well a reading recovers it: for tests and the scene-text
benchmark (benchmarks/ocr_scenes.py), so accuracy on real-looking scene text is measured rather than asserted.

Each photo gets several items: small phrases (letters 16-40 px) in one of eight DejaVu faces (fonts with every
Vietnamese letter), either on a board or straight on the photo with an outline, each warped in perspective and
turned; then the whole photo is blurred and saved as JPEG at quality 60-80. A reading is scored per drawn line
against the stretch of the read text that matches it best (``stretch_error``), and by the share of its accented
words read exactly (``accented_words``): whatever else the photo holds is read too and has no known truth.
"""

from __future__ import annotations

import io
import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmtools.ocr.scene import perspective_coefficients
from mmtools.ocr.signs import SIGN_TEXTS

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
FACES = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
         "DejaVuSansCondensed.ttf", "DejaVuSansCondensed-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSansMono.ttf"]
SCENE_TEXTS = SIGN_TEXTS + [
    "Cửa hàng tạp hóa", "Bệnh viện đa khoa", "Trường tiểu học Lê Lợi", "Nhà hàng hải sản", "Khách sạn Hoàng Gia",
    "Lối thoát hiểm", "Giảm tốc độ", "Đường một chiều", "Ngân hàng Nông nghiệp", "Chợ Bến Thành",
    "Quầy thu ngân", "Vui lòng xếp hàng", "Không hút thuốc", "Bãi giữ xe máy", "Sửa chữa điện lạnh",
    "Bưu điện thành phố", "Tiệm vàng Kim Hưng", "Cơm tấm sườn bì chả", "Mì Quảng ếch", "Bánh cuốn nóng",
    "Ủy ban nhân dân phường", "Nhà sách Phương Nam", "Đồ gỗ mỹ nghệ", "Thời trang trẻ em", "Rượu nếp cẩm",
]


@dataclass
class DrawnLine:
    text: str
    quad: list[tuple[float, float]]  # corners in the photo, clockwise from top left


def draw_scene(photo: Any, texts: list[str], rng: random.Random, *,
               quality: int | None = None) -> tuple[Any, list[DrawnLine]]:
    """The photo (RGB) with each of ``texts`` drawn somewhere on it, blurred and JPEG-damaged, and where each went.
    Items are placed where they do not overlap; one that finds no room is left out (and not returned)."""
    from PIL import Image, ImageFilter

    photo = photo.convert("RGB")
    drawn: list[DrawnLine] = []
    taken: list[tuple[int, int, int, int]] = []
    for text in texts:
        item = _item(text, rng)
        if item.width >= photo.width - 4 or item.height >= photo.height - 4:
            scale = min((photo.width - 8) / item.width, (photo.height - 8) / item.height)
            item = item.resize((max(1, int(item.width * scale)), max(1, int(item.height * scale))), Image.BICUBIC)
        item, corners = _warp(item, rng)
        for _ in range(40):
            x, y = rng.randint(2, photo.width - item.width - 2), rng.randint(2, photo.height - item.height - 2)
            box = (x - 4, y - 4, x + item.width + 4, y + item.height + 4)
            if not any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken):
                break
        else:
            continue
        taken.append(box)
        photo.paste(item, (x, y), item)
        drawn.append(DrawnLine(text, [(cx + x, cy + y) for cx, cy in corners]))
    photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.1)))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=quality or rng.randint(60, 80))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB"), drawn


def _item(text: str, rng: random.Random) -> Any:
    """One phrase as an RGBA picture: on a board, or bare letters with an outline of the opposite brightness."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(DEJAVU / rng.choice(FACES)), size=rng.randint(16, 40))
    dark = (rng.randint(0, 70), rng.randint(0, 60), rng.randint(0, 70), 255)
    light = (rng.randint(215, 255), rng.randint(205, 255), rng.randint(170, 245), 255)
    on_board = rng.random() < 0.5
    letters, outline = (dark, light) if rng.random() < 0.5 else (light, dark)
    stroke = 0 if on_board else max(1, round(font.size / rng.choice([10, 14, 18])))
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    pad = font.size // 3 if on_board else 2
    item = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad),
                     (outline if on_board else (0, 0, 0, 0)))
    ImageDraw.Draw(item).text((pad - left, pad - top), text, font=font, fill=letters, stroke_width=stroke,
                              stroke_fill=outline)
    return item


def _warp(item: Any, rng: random.Random) -> tuple[Any, list[tuple[float, float]]]:
    """The item seen in perspective (a plane turned away: one side up to 40% shorter and the item up to 12% narrower
    at the far end) and rotated up to 12 degrees; and where its corners went."""
    import math

    from PIL import Image

    w, h = item.width, item.height
    lean = rng.uniform(-0.2, 0.2)  # one side nearer: the far side down to 60% of the near side's height
    squeeze = rng.uniform(0, 0.12) * w
    src = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
    dst = [(squeeze * (lean < 0), h * max(0.0, lean)), (w - squeeze * (lean > 0), h * max(0.0, -lean)),
           (w - squeeze * (lean > 0), h * (1 - max(0.0, -lean))), (squeeze * (lean < 0), h * (1 - max(0.0, lean)))]
    angle = math.radians(rng.uniform(-12, 12))
    cos, sin = math.cos(angle), math.sin(angle)
    turned = [(x * cos - y * sin, x * sin + y * cos) for x, y in dst]
    min_x, min_y = min(p[0] for p in turned), min(p[1] for p in turned)
    turned = [(x - min_x + 1, y - min_y + 1) for x, y in turned]
    size = (math.ceil(max(p[0] for p in turned)) + 2, math.ceil(max(p[1] for p in turned)) + 2)
    coefficients = perspective_coefficients(turned, src)  # PIL maps output pixels back to input ones
    return item.transform(size, Image.PERSPECTIVE, coefficients, Image.BICUBIC), turned


def _clean(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def best_stretch(reference: str, reading: str) -> tuple[int, str]:
    """The edit distance from ``reference`` to the stretch of ``reading`` that matches it best (lines joined by
    spaces), and that stretch: a free start and end in the reading (approximate substring matching)."""
    ref, hyp = _clean(reference), _clean(reading.replace("\n", " "))
    n = len(hyp)
    previous = [0] * (n + 1)  # free start: any position of the reading begins the stretch at no cost
    starts = list(range(n + 1))
    for i, r in enumerate(ref, 1):
        current, current_starts = [i], [0]
        for j, h in enumerate(hyp, 1):
            options = ((previous[j - 1] + (r != h), starts[j - 1]), (previous[j] + 1, starts[j]),
                       (current[j - 1] + 1, current_starts[j - 1]))
            cost, start = min(options)
            current.append(cost)
            current_starts.append(start)
        previous, starts = current, current_starts
    end = min(range(n + 1), key=lambda j: (previous[j], j))
    distance, start = previous[end], starts[end]
    while start > 0 and hyp[start - 1] != " ":  # whole words: a stretch ending inside a word is not that word
        start -= 1
    while end < n and hyp[end] != " ":
        end += 1
    return distance, hyp[start:end]


def stretch_error(reference: str, reading: str) -> float:
    """Character error rate of the drawn line against the best-matching stretch of what was read."""
    return best_stretch(reference, reading)[0] / max(1, len(_clean(reference)))


def accented_words(reference: str, reading: str) -> tuple[int, int]:
    """(read exactly, in all) for the reference's words with a tone mark, a hat or đ: a word counts when it
    appears, spelt exactly, among the words of the best-matching stretch."""
    words = [w for w in _clean(reference).split() if not w.isascii()]
    found = _clean(best_stretch(reference, reading)[1]).split()
    exact = 0
    for word in words:
        if word in found:
            found.remove(word)
            exact += 1
    return exact, len(words)
