import random
import unicodedata

import pytest

from mmtools.text.normalize import TONE_STYLES, normalize_text


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


# (spelling variants, form in the "old" style, form in the "new" style)
TONE_VARIANTS = [
    (["hoà", "hòa"], "hòa", "hoà"),
    (["thuỷ", "thủy"], "thủy", "thuỷ"),
    (["khoẻ", "khỏe"], "khỏe", "khoẻ"),
    (["quý", "qúy"], "quý", "quý"),
    (["Hoà Bình", "Hòa Bình"], "Hòa Bình", "Hoà Bình"),
    (["THUỶ", "THỦY"], "THỦY", "THUỶ"),
    (["toà nhà", "tòa nhà"], "tòa nhà", "toà nhà"),
    (["gìa", "già"], "già", "già"),
]


@pytest.mark.parametrize("variants, old_form, new_form", TONE_VARIANTS)
def test_tone_variants_map_to_one_form_per_style(variants, old_form, new_form):
    for variant in variants + [nfd(v) for v in variants]:
        assert normalize_text(variant) == old_form  # the default is the common "old" placement
        assert normalize_text(variant, tone_style="old") == old_form
        assert normalize_text(variant, tone_style="new") == new_form


@pytest.mark.parametrize(
    "word",
    ["hoàng", "thuyền", "quốc", "giữa", "già", "gìn", "người", "ngoài", "khuỷu", "Quỳnh", "huỳnh",
     "thuở", "khuấy", "xoáy", "đường", "quyển", "giếng", "mùa", "mía", "tuần", "xoắn", "hươu", "yêu"],
)
def test_syllables_with_one_accepted_placement_do_not_change(word):
    for style in TONE_STYLES:
        assert normalize_text(word, tone_style=style) == word
        assert normalize_text(nfd(word), tone_style=style) == word
        assert normalize_text(word.upper(), tone_style=style) == word.upper()


def test_nfd_round_trip_gives_nfc():
    text = "Một chiếc xe hơi màu đỏ đậu trước ngôi nhà ở Thủy Nguyên, Hải Phòng."
    assert normalize_text(nfd(text)) == text
    assert unicodedata.is_normalized("NFC", normalize_text(nfd(text)))


@pytest.mark.parametrize(
    "decomposed, expected",
    [
        ("ho\u0300a", "hòa"),  # mark after the "o"
        ("hoa\u0300", "hòa"),  # after the "a" (the old placement), decomposed
        ("h\u0300oa", "hòa"),  # after the consonant
        ("hoan\u0300g", "hoàng"),  # NFC makes "ǹ" of this one
        ("thu\u0309y", "thủy"),
        ("qu\u0301y", "quý"),
    ],
)
def test_combining_tone_mark_anywhere_in_the_word(decomposed, expected):
    assert normalize_text(decomposed) == expected


def test_whitespace_is_collapsed_and_stripped():
    assert normalize_text("  một\u00a0con\t\tmèo \n\n đen \u3000") == "một con mèo đen"
    assert normalize_text("") == ""
    assert normalize_text(" \t\n\u00a0") == ""


def test_zero_width_characters_are_removed_but_emoji_sequences_kept():
    assert normalize_text("con\u200b mèo\ufeff đen\u00ad") == "con mèo đen"
    assert normalize_text("xe\u200chơi") == "xehơi"
    family = "👨\u200d👩\u200d👧"
    assert normalize_text(f"gia đình {family}") == f"gia đình {family}"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("đang chơi tennis  .", "đang chơi tennis."),
        ("ông Lộc nói : bán đất , giá cao !", "ông Lộc nói: bán đất, giá cao!"),
        ("con mèo ( màu đen ) .", "con mèo (màu đen)."),
        ("giảm 50 %", "giảm 50%"),
        ("vui quá :)", "vui quá :)"),  # emoticon kept
        ("file .txt", "file .txt"),  # punctuation glued to a word is not a sentence mark
        ("3 ,5 tỷ", "3 ,5 tỷ"),
        ("chờ đã ...", "chờ đã..."),
    ],
)
def test_punctuation_spacing(raw, expected):
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "A man riding a horse on the beach.",
        "3,5 tỷ đồng và 1.000.000 USD, 12:30, 02/05/2014",
        "https://vi.wikipedia.org/wiki/Hoà_Bình?q=thuỷ",
        "mail: hoà.nguyen@example.com",
        "café, résumé, naïve, José, Zoë, crème brûlée",
        "🚗🏠 ❤️ 👍🏽",
        "__init__ snake_case x_1",
    ],
)
def test_non_vietnamese_text_is_left_alone(text):
    assert normalize_text(text) == text
    assert normalize_text(text, tone_style="new") == text


def test_case_is_kept_unless_lowercase():
    assert normalize_text("Hà Nội") == "Hà Nội"
    assert normalize_text("HOÀ BÌNH", lowercase=True) == "hòa bình"
    assert normalize_text("HOÀ BÌNH", tone_style="new", lowercase=True) == "hoà bình"


def test_unknown_tone_style_is_refused():
    with pytest.raises(ValueError, match="tone_style"):
        normalize_text("hòa", tone_style="modern")


IDEMPOTENCE_SAMPLES = [
    "đang chơi tennis  .",
    "  Hoà  bình ,  thuỷ   lợi ( khoẻ ) .  ",
    nfd("Người đàn ông đội mũ bảo hiểm đi xe máy trên đường phố Hà Nội ."),
    "vui :) quá . . . !",
    "a . , b",
    "( ( x ) )",
    "İstanbul ǹ h\u0300oa",
]


@pytest.mark.parametrize("text", IDEMPOTENCE_SAMPLES)
@pytest.mark.parametrize("style", TONE_STYLES)
def test_idempotent(text, style):
    once = normalize_text(text, tone_style=style)
    assert normalize_text(once, tone_style=style) == once
    lowered = normalize_text(text, tone_style=style, lowercase=True)
    assert normalize_text(lowered, tone_style=style, lowercase=True) == lowered


def test_idempotent_on_random_mixtures():
    alphabet = list("aăâeêioôơuưyhngqtd .,:;!?()%_-") + ["\u0300", "\u0301", "\u0303", "\u0309", "\u0323",
                                                          "\u00a0", "\u200b", "\u200d", "😀", "\t"]
    rng = random.Random(1234)
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        for style in TONE_STYLES:
            once = normalize_text(text, tone_style=style)
            assert normalize_text(once, tone_style=style) == once, repr(text)


def test_old_and_new_input_give_identical_output():
    old = "Thuỷ điện Hoà Bình khoẻ mạnh, quý hoá"
    new = "Thủy điện Hòa Bình khỏe mạnh, qúy hóa"
    for style in TONE_STYLES:
        assert normalize_text(old, tone_style=style) == normalize_text(new, tone_style=style)
