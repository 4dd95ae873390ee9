"""The generator seam: one implementation per model family, chosen from the model's config.

A ``Generator`` turns images (and, for each, an optional prompt or question) into text with transformers'
generation, and turns (image, prompt, target) triples into a training batch whose loss teaches it that text.
Families:

* ``vision-encoder-decoder``: any image encoder with a text decoder (e.g. ViT + a Vietnamese decoder, or the
  tiny model `train captioner --arch tiny` builds); a prompt or question starts the decoder ([SEP] after it
  when the tokenizer has one).
* ``blip``: BLIP captioning models; a prompt is the caption's beginning (conditional captioning).
* ``git``: GIT; likewise a prompt is the text's beginning.
* ``vlm``: image-text-to-text chat models without remote code (Qwen2-VL, Qwen2.5-VL, SmolVLM/Idefics3,
  LLaVA, Gemma 3...); the prompt or question is the user's message, through the model's chat template.

Every family's prompt ids are left out of what it returns: a caption or an answer, nothing else.
"""

from __future__ import annotations

from typing import Any, Sequence

from mmtools.errors import ModelError

IGNORE = -100  # label value the loss ignores (prompt, padding, image tokens)
DEFAULT_VLM_PROMPT = "Mô tả bức ảnh này bằng một câu tiếng Việt."


class Generator:
    """What every family shares; subclasses say how prompts, generation and training batches look."""

    family = "?"
    default_prompt: str | None = None  # what `caption` asks when no --prompt is given

    def __init__(self, name: str, model: Any, tokenizer: Any, image_processor: Any, processor: Any = None,
                 device: str = "cpu", dtype: Any = None):
        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.image_processor, self.processor = image_processor, processor
        self.device, self.dtype = device, dtype

    # -- what commands use
    @property
    def image_size(self) -> int | None:
        from mmtools.models.hf_dual import processor_image_size

        return processor_image_size(self.image_processor)

    def generate(self, images: Sequence[Any], prompts: Sequence[str | None], *, max_new_tokens: int = 30,
                 num_beams: int = 1) -> list[str]:
        """One text per image. Images whose prompts have the same length are generated together (no padding
        inside a prompt, which decoders with absolute positions would read wrongly)."""
        import torch

        prompts = [p if p is not None else self.default_prompt for p in prompts]
        encoded = [self.prompt_ids(p) for p in prompts]
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(encoded):
            groups.setdefault(len(ids), []).append(i)
        texts: list[str] = [""] * len(images)
        for members in groups.values():
            with torch.inference_mode():
                outputs = self._generate([images[i] for i in members], [prompts[i] for i in members],
                                         torch.tensor([encoded[i] for i in members], dtype=torch.long),
                                         max_new_tokens=max_new_tokens, num_beams=num_beams)
            for i, text in zip(members, outputs):
                texts[i] = text
        return texts

    def training_batch(self, images: Sequence[Any], prompts: Sequence[str | None],
                       targets: Sequence[str]) -> dict[str, Any]:
        """Model inputs with ``labels`` (IGNORE on the prompt and padding) for ``model(**batch).loss``."""
        import torch

        rows = []
        for prompt, target in zip(prompts, targets):
            start = self.prompt_ids(prompt)
            answer = self.tokenizer(target, add_special_tokens=False)["input_ids"]
            rows.append((start, answer + [self.end_id]))
        width = max(len(s) + len(a) for s, a in rows)
        pad = self.pad_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (start, answer) in enumerate(rows):
            sequence = start + answer
            ids[row, :len(sequence)] = torch.tensor(sequence)
            labels[row, len(start):len(sequence)] = torch.tensor(answer)
            mask[row, :len(sequence)] = 1
        return self._training_inputs(self.pixels(images), ids, labels, mask)

    # -- family hooks
    def prompt_ids(self, prompt: str | None) -> list[int]:
        """The token ids generation starts from: the start token, then the prompt's."""
        ids = [self.start_id]
        if prompt:
            ids += self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return ids

    def _generate(self, images: list[Any], prompts: list[str | None], prompt_ids: Any, *, max_new_tokens: int,
                  num_beams: int) -> list[str]:
        raise NotImplementedError

    def _training_inputs(self, pixels: Any, ids: Any, labels: Any, mask: Any) -> dict[str, Any]:
        raise NotImplementedError

    # -- helpers
    def pixels(self, images: Sequence[Any]) -> Any:
        pixels = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        return pixels.to(device=self.device, dtype=self.dtype) if self.dtype is not None else pixels

    def _decode_new(self, sequences: Any, prompt_length: int) -> list[str]:
        return [" ".join(self.tokenizer.decode(row[prompt_length:], skip_special_tokens=True).split())
                for row in sequences]

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.end_id)

    @property
    def start_id(self) -> int:
        raise NotImplementedError

    @property
    def end_id(self) -> int:
        raise NotImplementedError

    def _search(self, max_new_tokens: int, num_beams: int) -> dict[str, Any]:
        return {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": False,
                "early_stopping": num_beams > 1 or None}


def _config_id(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    return None


class EncoderDecoderGenerator(Generator):
    """VisionEncoderDecoderModel: the decoder starts at ``decoder_start_token_id``; a prompt follows it, then
    [SEP] when the tokenizer has one (how `train captioner` lays out questions)."""

    family = "vision-encoder-decoder"

    @property
    def start_id(self) -> int:
        config = self.model.config
        value = _config_id(config, "decoder_start_token_id") or _config_id(config.decoder, "bos_token_id")
        if value is None:
            value = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.cls_token_id
        if value is None:
            raise ModelError(f"model {self.name} does not say which token starts its decoder",
                             hint="set decoder_start_token_id in its config.json")
        return int(value)

    @property
    def end_id(self) -> int:
        value = _config_id(self.model.config, "eos_token_id") or _config_id(self.model.config.decoder,
                                                                            "eos_token_id")
        return int(value if value is not None else self.tokenizer.eos_token_id)

    def prompt_ids(self, prompt: str | None) -> list[int]:
        ids = super().prompt_ids(prompt)
        if prompt and self.tokenizer.sep_token_id is not None:
            ids.append(int(self.tokenizer.sep_token_id))
        return ids

    def _generate(self, images, prompts, prompt_ids, *, max_new_tokens, num_beams):
        pixels = self.pixels(images)
        sequences = self.model.generate(pixel_values=pixels, decoder_input_ids=prompt_ids.to(self.device),
                                        eos_token_id=self.end_id, pad_token_id=self.pad_id,
                                        decoder_start_token_id=self.start_id,
                                        **self._search(max_new_tokens, num_beams))
        return self._decode_new(sequences, prompt_ids.shape[1])

    def _training_inputs(self, pixels, ids, labels, mask):
        # The decoder reads the sequence but its last token and predicts each next one (labels shifted).
        return {"pixel_values": pixels, "decoder_input_ids": ids[:, :-1], "decoder_attention_mask": mask[:, :-1],
                "labels": labels[:, 1:]}


class BlipGenerator(Generator):
    """BlipForConditionalGeneration: text starts at the text config's ``bos_token_id`` and ends at its
    ``sep_token_id``; a prompt is the caption's beginning ("một bức ảnh")."""

    family = "blip"

    @property
    def start_id(self) -> int:
        return int(self.model.config.text_config.bos_token_id)

    @property
    def end_id(self) -> int:
        return int(self.model.config.text_config.sep_token_id)

    def _generate(self, images, prompts, prompt_ids, *, max_new_tokens, num_beams):
        import torch

        # BLIP's generate drops the last id it is given (the tokenizer's [SEP]): give it one to drop.
        ended = torch.cat([prompt_ids, torch.full((prompt_ids.shape[0], 1), self.end_id)], dim=1)
        sequences = self.model.generate(pixel_values=self.pixels(images), input_ids=ended.to(self.device),
                                        **self._search(max_new_tokens, num_beams))
        return self._decode_new(sequences, prompt_ids.shape[1])

    def _training_inputs(self, pixels, ids, labels, mask):
        return {"pixel_values": pixels, "input_ids": ids, "attention_mask": mask, "labels": labels}


class GitGenerator(Generator):
    """GitForCausalLM: text starts at [CLS] (``bos_token_id``) and ends at ``eos_token_id``."""

    family = "git"

    @property
    def start_id(self) -> int:
        value = _config_id(self.model.config, "bos_token_id")
        return int(value if value is not None else self.tokenizer.cls_token_id)

    @property
    def end_id(self) -> int:
        value = _config_id(self.model.config, "eos_token_id")
        return int(value if value is not None else self.tokenizer.sep_token_id)

    def _generate(self, images, prompts, prompt_ids, *, max_new_tokens, num_beams):
        sequences = self.model.generate(pixel_values=self.pixels(images), input_ids=prompt_ids.to(self.device),
                                        eos_token_id=self.end_id, pad_token_id=self.pad_id,
                                        **self._search(max_new_tokens, num_beams))
        return self._decode_new(sequences, prompt_ids.shape[1])

    def _training_inputs(self, pixels, ids, labels, mask):
        return {"pixel_values": pixels, "input_ids": ids, "attention_mask": mask, "labels": labels}


class ChatVlmGenerator(Generator):
    """Image-text-to-text chat models (AutoModelForImageTextToText, no remote code): the prompt is the user's
    message beside the image, through the processor's chat template; the answer is what the model adds."""

    family = "vlm"
    default_prompt = DEFAULT_VLM_PROMPT

    def _messages(self, prompt: str | None, answer: str | None = None) -> list[dict[str, Any]]:
        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": prompt or DEFAULT_VLM_PROMPT}]}]
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return messages

    def _chat(self, prompt: str | None, answer: str | None = None) -> str:
        return self.processor.apply_chat_template(self._messages(prompt, answer),
                                                  add_generation_prompt=answer is None)

    def prompt_ids(self, prompt: str | None) -> list[int]:
        return [0]  # every prompt goes through the chat template and left padding: one group

    def _inputs(self, images: Sequence[Any], texts: list[str], **extra: Any) -> Any:
        inputs = self.processor(images=[[image] for image in images], text=texts, return_tensors="pt",
                                padding=True, **extra)
        moved = {}
        for key, value in inputs.items():
            if hasattr(value, "to"):
                value = value.to(self.device)
                if value.is_floating_point() and self.dtype is not None:
                    value = value.to(self.dtype)
            moved[key] = value
        return moved

    def _generate(self, images, prompts, prompt_ids, *, max_new_tokens, num_beams):
        inputs = self._inputs(images, [self._chat(p) for p in prompts], padding_side="left")
        sequences = self.model.generate(**inputs, pad_token_id=self.pad_id, **self._search(max_new_tokens,
                                                                                            num_beams))
        return self._decode_new(sequences, inputs["input_ids"].shape[1])

    @property
    def end_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def training_batch(self, images, prompts, targets):
        import torch

        full = self._inputs(images, [self._chat(p, t) for p, t in zip(prompts, targets)], padding_side="right")
        labels = full["input_ids"].clone()
        labels[full["attention_mask"] == 0] = IGNORE
        for row, (image, prompt) in enumerate(zip(images, prompts)):
            start = self._inputs([image], [self._chat(prompt)])["input_ids"].shape[1]
            labels[row, :start] = IGNORE  # the question and the image are read, not learnt
        full["labels"] = labels.to(torch.long)
        return full


# model_type -> family class. Anything else AutoModelForImageTextToText knows is a chat VLM.
FAMILIES: dict[str, type[Generator]] = {"vision-encoder-decoder": EncoderDecoderGenerator,
                                        "blip": BlipGenerator, "git": GitGenerator}
NOT_CHAT = ("blip-2", "instructblip", "instructblipvideo", "kosmos-2", "pix2struct", "udop", "florence2")


def family_for(config: Any) -> type[Generator]:
    """The Generator class of a model, from its config; ModelError naming what is supported otherwise."""
    model_type = getattr(config, "model_type", None)
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and model_type not in NOT_CHAT:
        return ChatVlmGenerator
    raise ModelError(f"a {model_type!r} model cannot caption here: mmtools generates with BLIP, GIT, "
                     "VisionEncoderDecoder and image-text-to-text chat models (Qwen2-VL, SmolVLM, LLaVA...)",
                     hint="pass a captioning model, e.g. --model qwen2-vl-2b or a `mmtools train captioner` run")
