"""Captioning and question answering: the generator seam on tiny random models of every family (loaded through
the real code, offline), the scores, and the commands' manners."""

from __future__ import annotations

import json

import orjson
import pytest
from typer.testing import CliRunner

from mmtools.cli import app

runner = CliRunner()
FAMILIES = ("vision-encoder-decoder", "blip", "git", "llava")


def run(args, input=None):
    return runner.invoke(app, args, input=input, catch_exceptions=False)


def json_lines(text):
    return [orjson.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def captioners(tmp_path_factory) -> dict[str, str]:
    from mmtools.caption.synthetic import build_random_captioner

    root = tmp_path_factory.mktemp("captioners")
    return {family: str(build_random_captioner(root / family, family)) for family in FAMILIES}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("pictures")
    for i, colour in enumerate(["red", "blue", "green"]):
        Image.new("RGB", (40 + 8 * i, 32), colour).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_text("not an image")
    return folder


# ------------------------------------------------------------------------------------------ text and scores


def test_syllables_ignore_case_punctuation_underscores_and_tone_placement():
    from mmtools.caption.text import most_frequent, syllables

    assert syllables("Đứa_trẻ đang ném, quả bóng chày.") == ["đứa", "trẻ", "đang", "ném", "quả", "bóng", "chày"]
    assert syllables("hoà bình") == syllables("HÒA BÌNH")
    assert most_frequent(["Một con mèo.", "con chó", "một con MÈO"]) == "Một con mèo."
    assert most_frequent(["", "  "]) is None


def test_bleu_and_cider_known_values_in_syllables():
    from mmtools.caption.metrics import caption_scores

    references = {1: ["một con mèo đang ngủ trên ghế", "con mèo ngủ trên ghế sofa"],
                  2: ["người đàn ông chơi bóng chày trên sân", "một cầu thủ bóng chày đang ném bóng"],
                  3: ["hai chú chó chạy trên bãi cỏ xanh", "những con chó trên cỏ"]}
    same = caption_scores(references, {k: v[0].upper() + " ." for k, v in references.items()})
    assert same["bleu4"] == pytest.approx(1.0, abs=1e-6)  # case and punctuation do not count
    assert same["cider"] > 3
    swapped = caption_scores(references, {1: references[2][0], 2: references[3][0], 3: references[1][0]})
    assert swapped["cider"] < 0.2 * same["cider"] and swapped["bleu4"] < 0.01
    nothing = caption_scores(references, {1: "", 2: "", 3: ""})
    assert nothing == {"bleu4": pytest.approx(0.0, abs=1e-6), "cider": 0.0}
    # CIDEr-D of one hypothesis against identical references is 10 (the COCO scaling), whatever the corpus.
    single = caption_scores({"a": ["x y z w"], "b": ["p q r s"]}, {"a": "x y z w", "b": "p q r s"})
    assert single["cider"] == pytest.approx(10.0, rel=1e-6)


# ------------------------------------------------------------------------------------------ families


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_captions_and_answers_through_the_commands(captioners, pictures, family):
    result = run(["caption", "-m", captioners[family], str(pictures), "--max-new-tokens", "4", "-b", "2"])
    assert result.exit_code == 1  # the broken file was skipped, named on stderr
    assert "broken.jpg" in result.stderr and "3 captioned, 1 skipped" in result.stderr
    records = json_lines(result.stdout)
    assert [r["path"].rsplit("/", 1)[1] for r in records] == ["0.png", "1.png", "2.png"]
    assert all(isinstance(r["caption"], str) and r["caption"].strip() for r in records)
    asked = run(["ask", "-m", captioners[family], "--question", "Hình này màu gì?", "--field", "màu",
                 "--max-new-tokens", "3", "--num-beams", "2", str(pictures / "0.png")])
    assert asked.exit_code == 0, asked.stderr
    [record] = json_lines(asked.stdout)
    assert isinstance(record["màu"], str) and "answer" not in record


def test_the_family_is_chosen_from_the_config(captioners):
    from mmtools.caption.loading import load_captioner

    kinds = {family: type(load_captioner(captioners[family], "cpu")).__name__ for family in FAMILIES}
    assert kinds == {"vision-encoder-decoder": "EncoderDecoderGenerator", "blip": "BlipGenerator",
                     "git": "GitGenerator", "llava": "ChatVlmGenerator"}


def test_generation_leaves_the_prompt_out_and_is_deterministic(captioners, pictures):
    from PIL import Image

    from mmtools.caption.loading import load_captioner

    generator = load_captioner(captioners["git"], "cpu")
    image = Image.open(pictures / "0.png").convert("RGB")
    texts = generator.generate([image, image], [None, "màu đỏ"], max_new_tokens=5)
    assert texts[0] == generator.generate([image], [None], max_new_tokens=5)[0]
    long = generator.generate([image], ["màu đỏ hình tròn"], max_new_tokens=2)[0]
    assert len(long.split()) <= 2  # the prompt's four syllables are not in it


def test_ask_takes_each_records_question_and_names_records_without_one(captioners, pictures):
    lines = [{"path": str(pictures / "0.png"), "question": "Đây là hình gì?"}, {"path": str(pictures / "1.png")}]
    result = run(["ask", "-m", captioners["vision-encoder-decoder"], "--max-new-tokens", "3"],
                 input="".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    assert result.exit_code == 1
    assert "1.png" in result.stderr and "no 'question'" in result.stderr
    [record] = json_lines(result.stdout)
    assert record["question"] == "Đây là hình gì?" and "answer" in record


def test_a_model_that_cannot_caption_is_refused_in_one_sentence(tmp_path, siglip_dir, pictures):
    result = run(["caption", "-m", siglip_dir, str(pictures / "0.png")])
    assert result.exit_code == 3
    assert "cannot caption" in result.stderr and "Traceback" not in result.stderr
    offline = run(["caption", "-m", "nobody/no-such-captioner", str(pictures / "0.png")])
    assert offline.exit_code == 3 and "not in the local Hugging Face cache" in offline.stderr


def test_a_captioner_is_not_an_embedding_model(tmp_path, pictures):
    from mmtools.caption.loading import load_captioner
    from mmtools.caption.training import save_captioner

    generator = load_captioner(str(_tiny(tmp_path)), "cpu")
    target = tmp_path / "saved"
    target.mkdir()
    save_captioner(target, generator.model, generator, {"task": "captioning"})
    assert (target / "model.safetensors").exists() and not list(target.glob("*.bin"))
    result = run(["embed-images", "-m", str(target), str(pictures / "0.png")])
    assert result.exit_code == 3 and "is a captioner" in result.stderr
    assert json_lines(run(["caption", "-m", str(target), str(pictures / "0.png"),
                           "--max-new-tokens", "2"]).stdout)[0]["caption"] is not None


def _tiny(tmp_path):
    from mmtools.caption.synthetic import build_tiny_captioner

    return build_tiny_captioner(tmp_path / "tiny", ["hình tròn màu đỏ", "hình vuông màu xanh"], hidden=16)


def test_training_refuses_a_non_empty_output_and_needs_base_or_arch(tmp_path):
    from mmtools.caption.synthetic import shapes_vqa_data

    data = shapes_vqa_data(tmp_path, 4, name="few")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    refused = run(["train", "captioner", "-d", str(data), "--arch", "tiny", "-o", str(tmp_path / "out")])
    assert refused.exit_code == 3 and "not empty" in refused.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine" and not (tmp_path / "out" / "untrained").exists()
    neither = run(["train", "captioner", "-d", str(data), "-o", str(tmp_path / "new")])
    assert neither.exit_code == 2 and "--arch tiny" in neither.stderr


def test_training_data_rows_are_read_as_captions_or_questions(tmp_path):
    from mmtools.caption.training import read_caption_items, split_by_image

    (tmp_path / "a.png").write_bytes(b"")
    rows = [{"path": "a.png", "captions": ["một", "hai"]}, {"path": "a.png", "question": "gì?", "answer": "đỏ"},
            {"path": "b.png", "question": "gì?"}, {"captions": ["không ảnh"]}]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    problems = []
    items = read_caption_items(str(data), on_problem=problems.append)
    assert [(i.prompt, i.target) for i in items] == [(None, "một"), (None, "hai"), ("gì?", "đỏ")]
    assert len(problems) == 2
    train, held = split_by_image(items + [items[0].__class__(str(tmp_path / "c.png"), "ba")], 0.5)
    assert {i.image for i in train}.isdisjoint({i.image for i in held})


def test_keyframe_records_are_captioned_from_their_video(captioners, tmp_path):
    pytest.importorskip("av")
    from mmtools.video.synthetic import write_video

    clip = tmp_path / "clip.mp4"
    write_video(clip, [20, 20])
    frames = [{"path": str(clip), "time": 0.2, "id": "clip#1"}, {"path": str(clip), "time": 1.2, "id": "clip#2"},
              {"path": str(clip), "time": 99.0, "id": "clip#3"}]
    result = run(["caption", "-m", captioners["blip"], "--max-new-tokens", "3"],
                 input="".join(json.dumps(f) + "\n" for f in frames))
    records = json_lines(result.stdout)
    assert [r["id"] for r in records] == ["clip#1", "clip#2"] and all("caption" in r for r in records)
    assert records[0]["time"] == 0.2
    assert result.exit_code == 1 and "clip.mp4#t=" in result.stderr  # the frame past the end is named


def test_lora_trains_adapters_only_and_saves_a_plain_model(tmp_path, pictures):
    pytest.importorskip("peft")
    import torch
    from safetensors.torch import load_file

    from mmtools.caption.loading import default_generators, load_captioner
    from mmtools.caption.training import CaptionerOptions, CaptionerTask, CaptionItem

    generator = default_generators.get(str(_tiny(tmp_path)), for_training=True)
    items = [CaptionItem(str(pictures / "0.png"), "hình tròn màu đỏ"), CaptionItem(str(pictures / "1.png"), "hình vuông màu xanh")]
    task = CaptionerTask(generator, items, [], CaptionerOptions(lora=True, lr=1e-2), batch_size=2)
    trainable = [name for name, p in task.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    before = {n: p.detach().clone() for n, p in task.model.named_parameters() if "lora_" not in n}
    optimiser = torch.optim.AdamW(task.param_groups()[0]["params"], lr=1e-2)
    batch = task.collate([task.dataset()[0], task.dataset()[1]])
    for _ in range(3):
        optimiser.zero_grad()
        task.loss(task.model, batch).backward()
        optimiser.step()
    assert all(torch.equal(before[n], p) for n, p in task.model.named_parameters() if n in before)
    target = tmp_path / "lora-model"
    target.mkdir()
    task.save(task.model, target)
    weights = load_file(target / "model.safetensors")
    assert not any("lora_" in key for key in weights)
    assert json.loads((target / "mmtools.json").read_text())["training"]["task"] == "captioning"
    from PIL import Image

    image = Image.open(pictures / "0.png").convert("RGB")
    [text] = load_captioner(str(target), "cpu").generate([image], [None], max_new_tokens=2)
    assert isinstance(text, str)


def test_the_eval_table_for_captions_and_for_questions():
    from mmtools.cli.captioner import _table

    captions = _table([{"model": "m", "baseline": None, "images": 3, "bleu4": 0.1, "cider": 0.5},
                       {"model": "most frequent training caption", "baseline": "most-frequent", "caption": "một",
                        "images": 3, "bleu4": 0.0, "cider": 0.2}])
    assert "CIDEr" in captions and "0.5000" in captions and "most frequent training caption: một" in captions
    answers = _table([{"model": "m", "baseline": None, "questions": 8, "accuracy": 0.875}])
    assert "accuracy" in answers and "0.8750" in answers
