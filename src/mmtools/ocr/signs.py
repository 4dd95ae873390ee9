"""Photos with Vietnamese signs drawn on them, and the character error rate of a reading: for tests and the
OCR benchmark, so accuracy is measured on real photos with known text rather than asserted."""

from __future__ import annotations

import random
import unicodedata
from pathlib import Path
from typing import Any

SIGN_TEXTS = [
    "Cà phê sữa đá 25.000đ", "Khuyến mãi giảm giá 50%", "Phở bò tái chín", "Bánh mì thịt nướng",
    "Tiệm sửa xe máy", "Nhà thuốc Minh Châu", "Cấm đỗ xe", "Trà sữa trân châu", "Quán cơm bình dân",
    "Cho thuê phòng trọ", "Hớt tóc nam nữ", "Bún chả Hà Nội", "Giặt ủi lấy liền", "Điện thoại di động",
    "Sinh tố trái cây", "Nước mía sầu riêng", "Văn phòng phẩm", "Xôi gà nóng hổi", "Lẩu dê Bảy Hùng",
    "Chè khúc bạch", "Bánh xèo miền Tây", "Hủ tiếu Nam Vang", "Kem tươi mát lạnh", "Gạo ngon Đồng Tháp",
]
FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
         "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf"]


def draw_sign(photo: Any, text: str, rng: random.Random) -> Any:
    """The photo with a sign (a light board, dark letters, slightly tilted) holding ``text``."""
    return place_sign(photo, text, rng)[0]


def place_sign(photo: Any, text: str, rng: random.Random) -> tuple[Any, list[int]]:
    """As ``draw_sign``, and where the board went: ``[left, top, width, height]``."""
    from PIL import Image, ImageDraw, ImageFont

    photo = photo.convert("RGB")
    width, height = photo.size
    font = ImageFont.truetype(rng.choice([f for f in FONTS if Path(f).exists()]),
                              size=max(16, int(width * rng.uniform(0.055, 0.08))))
    left, top, right, bottom = font.getbbox(text)
    pad = font.size // 2
    board = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad),
                      (rng.randint(225, 255), rng.randint(215, 255), rng.randint(160, 240), 255))
    ImageDraw.Draw(board).text((pad - left, pad - top), text, font=font,
                               fill=(rng.randint(0, 90), rng.randint(0, 40), rng.randint(0, 60), 255))
    board = board.rotate(rng.uniform(-3, 3), resample=Image.BICUBIC, expand=True)
    if board.width > width:
        board = board.resize((width - 4, max(1, board.height * (width - 4) // board.width)))
    x = rng.randint(0, max(0, width - board.width))
    y = rng.randint(0, max(0, height - board.height))
    photo.paste(board, (x, y), board)
    return photo, [x, y, board.width, board.height]


def on_sign(lines: list[dict[str, Any]], box: list[int]) -> str:
    """The text of the read lines (``ocr_lines`` records) whose centre lies on the board at ``box``: the photo's
    own text (a shop front, a shirt) is read too, and no truth is known for it."""
    x, y, width, height = box
    return "\n".join(line["text"] for line in lines
                     if x <= line["box"][0] + line["box"][2] / 2 <= x + width
                     and y <= line["box"][1] + line["box"][3] / 2 <= y + height)


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance between the two texts (NFC, spaces collapsed) over the reference's length."""
    def clean(text: str) -> str:
        return " ".join(unicodedata.normalize("NFC", text).split())

    from mmtools.ocr.syllables import edit_distance

    ref = clean(reference)
    return edit_distance(ref, clean(hypothesis)) / max(1, len(ref))
