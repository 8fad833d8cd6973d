"""``text`` latent: a 50-80 word description of the image (the paper prompts Qwen-VL-Chat with the class name).

offline (default): a template captioner over what the offline object finder sees (objects with colour, shape,
size and position, pairwise relations, background colour), so the description varies with the image; sentences
are added until it has at least ``min_words`` words and it is cut to at most ``max_words``.
pretrained: any transformers image-text-to-text model (``AutoModelForImageTextToText`` + ``AutoProcessor`` saved
with ``save_pretrained``: BLIP, LLaVA, Qwen2-VL, ...) from ``captioner_path``, prompted with ``prompt`` where
``{subject}`` is the caption or class name; a chat template is used when the processor has one.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from kaleido.checks import check_int, check_keys
from kaleido.errors import ConfigError
from kaleido.latents import EXTRACTORS, LatentType
from kaleido.latents.formats import parse_text
from kaleido.latents.images import (
    COMMON_DEFAULTS,
    COMMON_KEYS,
    SEGMENT_KEYS,
    ImageContext,
    LatentStrings,
    check_common,
    check_segment,
    loaded,
    map_batched,
    require_files,
    segment_options,
)
from kaleido.latents.objects import HOW_TO_GET
from kaleido.latents.segment import Segment, nearest_name, segment_image
from metrics.features import check_images

TEXT_DEFAULTS: dict[str, Any] = {"min_words": 50, "max_words": 80, "max_new_tokens": 120,
                                 "prompt": "Describe this image of {subject} in 50 to 80 words."}
BACKGROUND_PALETTE = {"black": (0, 0, 0), "dark gray": (64, 64, 64), "gray": (128, 128, 128),
                      "light gray": (200, 200, 200), "white": (255, 255, 255), "dark blue": (20, 20, 80),
                      "dark green": (20, 70, 20), "brown": (110, 70, 30), "beige": (230, 220, 190)}
_NUMBER = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _where(seg: Segment) -> str:
    x1, y1, x2, y2 = seg.box()
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    vert = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    horiz = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    return "centre" if (vert, horiz) == ("middle", "centre") else f"{vert} {horiz}"


def _size(seg: Segment) -> tuple[str, int]:
    share = 100 * seg.mask.mean()
    return ("large" if share > 20 else "medium-sized" if share > 6 else "small"), int(round(share))


def describe(image: np.ndarray, subject: str, segments: list[Segment], min_words: int, max_words: int) -> str:
    """A deterministic description of ``image`` from its ``segments``; ``min_words`` <= words <= ``max_words``."""
    background = nearest_name(np.median(np.concatenate([image[0], image[-1]]), axis=0), BACKGROUND_PALETTE)
    count = _NUMBER[len(segments)] if len(segments) < len(_NUMBER) else str(len(segments))
    noun = "object" if len(segments) == 1 else "objects"
    first = [f"A small picture of {subject} showing {count} flat coloured {noun} on a plain {background} background."]
    objects, relations = [], []
    for seg in segments:
        size, share = _size(seg)
        objects.append(f"A {size} {seg.color} {seg.shape} sits in the {_where(seg)} of the frame, covering about "
                       f"{share} percent of the picture.")
    for a, b in zip(segments, segments[1:], strict=False):
        (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a.box(), b.box()
        dx, dy = (bx1 + bx2 - ax1 - ax2) / 2, (by1 + by2 - ay1 - ay2) / 2
        rel = ("to the left of" if dx > 0 else "to the right of") if abs(dx) >= abs(dy) else \
            ("above" if dy > 0 else "below")
        relations.append(f"The {a.color} {a.shape} is {rel} the {b.color} {b.shape}.")
    colours = sorted({s.color for s in segments})
    extra = [f"The main colours are {', '.join(colours) or background} against {background}.",
             "The shapes have sharp edges, uniform fill and no texture, shading or shadows.",
             "The scene is simple and clean, like a diagram drawn for a geometry lesson.",
             "Nothing else appears in the image; the remaining space is empty background.",
             "The composition is flat, seen straight from the front, with no perspective or depth."]
    sentences = first + objects + relations
    for sentence in extra:
        if len(" ".join(sentences).split()) >= min_words:
            break
        sentences.append(sentence)
    words = " ".join(sentences).split()
    if len(words) > max_words:
        words = words[:max_words]
        words[-1] = words[-1].rstrip(",;.") + "."
    return " ".join(words)


class Captioner:
    """A transformers image-text-to-text model from a local directory."""

    def __init__(self, path: str, prompt: str, max_new_tokens: int) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        directory = require_files(path, ("config.json",), "captioner (captioner_path)", HOW_TO_GET)
        require_files(directory, ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"),
                      "captioner weights", HOW_TO_GET)
        self.processor = AutoProcessor.from_pretrained(directory)
        self.model = AutoModelForImageTextToText.from_pretrained(directory).eval()
        self.prompt, self.max_new_tokens = prompt, max_new_tokens

    def _text(self, subject: str) -> str:
        text = self.prompt.format(subject=subject)
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        return text

    def __call__(self, images: np.ndarray, subjects: list[str]) -> list[str]:
        import torch

        out = []
        for image, subject in zip(images, subjects, strict=True):  # prompts differ in length: one at a time
            inputs = self.processor(images=image, text=self._text(subject), return_tensors="pt")
            with torch.inference_mode():
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            prompt_ids = inputs["input_ids"]
            if ids.shape[1] >= prompt_ids.shape[1] and torch.equal(ids[:, :prompt_ids.shape[1]], prompt_ids):
                ids = ids[:, prompt_ids.shape[1]:]
            text = self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
            prompt = self.processor.batch_decode(prompt_ids, skip_special_tokens=True)[0].strip()
            if prompt and text.startswith(prompt):  # encoder-decoder captioners (BLIP) echo the prompt prefix
                text = text[len(prompt):]
            out.append(" ".join(text.replace("|", " ").split()))
        return out


class TextExtractor(LatentType):
    keys = COMMON_KEYS | SEGMENT_KEYS | set(TEXT_DEFAULTS) | {"captioner_path"}

    def per_item(self, spec: dict[str, Any]) -> bool:
        """Each image's string depends on that image alone: the stage may extract the set in parts."""
        return True

    def validate(self, spec: dict[str, Any], where: str) -> None:
        check_keys(spec, self.keys, where)
        check_common(spec, where, ("offline", "pretrained"))
        check_segment(spec, where)
        check_int(spec, "min_words", where, 1)
        check_int(spec, "max_words", where, 1)
        check_int(spec, "max_new_tokens", where, 1)
        merged = {**TEXT_DEFAULTS, **spec}
        if merged["min_words"] > merged["max_words"]:
            raise ConfigError(f"{where}: min_words={merged['min_words']} exceeds max_words={merged['max_words']}")
        if not isinstance(merged["prompt"], str):
            raise ConfigError(f"{where}.prompt: {merged['prompt']!r} is not a string")
        if merged.get("source") == "pretrained" and not isinstance(spec.get("captioner_path"), str):
            raise ConfigError(f"{where}: source 'pretrained' needs captioner_path (a local Hugging Face "
                              "image-text-to-text model directory)")

    def parse(self, text: str, names: Collection[str] | None = None, num_tokens: int = 32,
              codebook_size: int | None = None) -> str:
        return parse_text(text)

    def write(self, parsed: str) -> str:
        return parsed

    def extract_strings(self, images: np.ndarray, ctx: ImageContext, spec: dict[str, Any], seed: int) -> LatentStrings:
        check_images(images)
        spec = {**COMMON_DEFAULTS, **TEXT_DEFAULTS, **spec}
        if spec["source"] == "pretrained":
            captioner = loaded(Captioner, spec["captioner_path"], spec["prompt"], spec["max_new_tokens"])
            strings = map_batched(images, spec["batch_size"], "text (captioner)", lambda batch, sl: captioner(
                batch, [ctx.prompt_subject(i) for i in range(sl.start, sl.stop)]))
            return LatentStrings(strings)
        opts = segment_options(spec)
        strings = map_batched(images, spec["batch_size"], "text (offline)", lambda batch, sl: [
            describe(img, ctx.prompt_subject(i), segment_image(img, **opts), spec["min_words"], spec["max_words"])
            for img, i in zip(batch, range(sl.start, sl.stop), strict=True)])
        return LatentStrings(strings)


EXTRACTORS.register("text")(TextExtractor())
