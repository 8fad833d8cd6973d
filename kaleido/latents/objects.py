"""Object latents: ``bbox`` (boxes) and ``blob`` (ellipses) extractors.

offline (default): :func:`kaleido.latents.segment.segment_image` (colour segmentation + connected components); the
box is the component's extent, the blob its second-moment ellipse.
pretrained: boxes from a Hugging Face object detector saved with ``save_pretrained`` (``AutoModelForObjectDetection``:
DETR, Conditional/Deformable DETR, YOLOS, RT-DETR, ...; object names = the model's ``id2label``; or OWL-ViT / OWLv2
queried (``queries``, :func:`detector_queries`) with the object vocabulary '<colour> <shape>' from
``palette``/``shapes``, with each image's class name, or with the noun phrases of each image's caption,
:mod:`kaleido.latents.nouns`); blobs from SAM
(``SamModel`` + ``SamProcessor`` from ``sam_path``) prompted with those boxes (or the offline boxes when no detector
is given), an ellipse fitted to each mask by second moments — the paper's recipe.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kaleido.checks import check_choice, check_int, check_number
from kaleido.errors import ConfigError
from kaleido.latents import EXTRACTORS, LatentType
from kaleido.latents import formats as fmt
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
    object_names,
    require_files,
    segment_options,
)
from kaleido.latents.nouns import DEFAULT_MAX_QUERIES, DEFAULT_MAX_WORDS, caption_nouns
from kaleido.latents.quality import GTObject, blob_box, object_quality
from kaleido.latents.segment import Segment, segment_image
from metrics.errors import InputError
from metrics.features import check_images

#: options of ``queries: caption_nouns``: phrases per image, words per phrase (:mod:`kaleido.latents.nouns`)
NOUN_KEYS = {"max_queries", "max_query_words"}
DETECTOR_KEYS = {"detector_path", "score_threshold", "queries", *NOUN_KEYS}
#: what an open-vocabulary detector is queried with (``queries``): the offline vocabulary, the image's class name,
#: or the noun phrases of the image's caption
QUERIES = ("palette", "class_name", "caption_nouns")
#: the quality-record count of images whose per-image query list is empty (a caption without a noun phrase)
NO_QUERY_COUNT = "images_without_queries"
#: how the objects of one image are listed: largest first (default: the salient object leads the string, so the
#: prior decides it first), or as found (the offline finder: top-to-bottom, left-to-right; a detector: by score)
ORDERS = ("area", "found")
HOW_TO_GET = ("name its Hugging Face repository (org/name) in the config and fetch it with `python -m kaleido.weights "
              "fetch --config C` on a host with internet, or download it with `huggingface-cli download <repo> "
              "--local-dir DIR` (or `model.save_pretrained(DIR)`), copy it here and set the path in the config")


def clean_name(label: str) -> str:
    """A detector label -> a name the formats accept (lower case, letters/digits/space/_/-)."""
    name = re.sub(r"[^a-z0-9 _-]+", " ", str(label).lower()).strip()
    name = re.sub(r"\s+", " ", name)
    if not name or not name[0].isalpha():
        name = f"object {name}".strip()
    return name


# --- offline --------------------------------------------------------------------------------------------------


def ordered(items: list[fmt.Box] | list[fmt.Blob], order: str) -> list[Any]:
    """``items`` (as found) listed by ``order`` (:data:`ORDERS`); equal areas keep the order found."""
    return sorted(items, key=lambda item: -item.area) if order == "area" else list(items)


def segments_of(image: np.ndarray, spec: Mapping[str, Any]) -> list[Segment]:
    return segment_image(image, **segment_options(spec))


def boxes_of_segments(segments: list[Segment]) -> list[fmt.Box]:
    return [fmt.Box(s.name, *(fmt.to_unit(v) for v in s.box())) for s in segments]


def blob_from_mask(name: str, seg: Segment) -> fmt.Blob:
    xc, yc, ra, rb, theta = seg.ellipse()
    theta_int = int(round(theta)) % 180
    ra_i, rb_i = fmt.to_unit(ra), fmt.to_unit(rb)
    return fmt.Blob(name, fmt.to_unit(xc), fmt.to_unit(yc), ra_i, min(rb_i, ra_i), theta_int)


# --- pretrained -----------------------------------------------------------------------------------------------


class HFDetector:
    """A transformers object detector loaded from a local directory; boxes in [0, 1] image coordinates.

    Closed-set detectors (``AutoModelForObjectDetection``: DETR family) name objects by their ``id2label``;
    open-vocabulary OWL-ViT / OWLv2 (``AutoModelForZeroShotObjectDetection``) are queried with text and name
    objects by the matching query: ``vocabulary`` (every name a latent may hold, e.g. every '<colour> <shape>', or
    every class name) is the default query of every image; :meth:`__call__` takes per-image queries instead (the
    image's own class name, or its caption's noun phrases: :func:`detector_queries`).
    """

    ZERO_SHOT = ("owlvit", "owlv2")

    def __init__(self, path: str, score_threshold: float, vocabulary: tuple[str, ...]) -> None:
        import json

        from transformers import (
            AutoImageProcessor,
            AutoModelForObjectDetection,
            AutoModelForZeroShotObjectDetection,
            AutoProcessor,
        )

        directory = require_files(path, ("config.json",), "object detector (detector_path)", HOW_TO_GET)
        require_files(directory, ("model.safetensors", "pytorch_model.bin"), "object detector weights", HOW_TO_GET)
        require_files(directory, ("preprocessor_config.json", "processor_config.json"),
                      "object detector image processor", HOW_TO_GET)
        model_type = json.loads((directory / "config.json").read_text()).get("model_type")
        self.zero_shot = model_type in self.ZERO_SHOT
        if self.zero_shot:
            self.processor = AutoProcessor.from_pretrained(directory)
            self.model = AutoModelForZeroShotObjectDetection.from_pretrained(directory).eval()
            self.names = list(vocabulary)
        else:
            self.processor = AutoImageProcessor.from_pretrained(directory)
            self.model = AutoModelForObjectDetection.from_pretrained(directory).eval()
            self.names = sorted({clean_name(v) for v in self.model.config.id2label.values()})
        self.threshold = score_threshold

    def __call__(self, images: np.ndarray, queries: list[list[str]] | None = None
                 ) -> list[list[tuple[str, float, float, float, float]]]:
        """images (n, H, W, 3) uint8 -> per image [(name, x1, y1, x2, y2)], coordinates in [0, 1], best first.
        ``queries``: per image, the names an open-vocabulary detector looks for (None: the whole vocabulary)."""
        import torch

        h, w = images.shape[1:3]
        if queries is not None and not self.zero_shot:
            raise InputError("per-image queries (queries: class_name or caption_nouns) need an open-vocabulary "
                             "detector (OWL-ViT / OWLv2); a closed-set detector names objects by its own labels")
        queries = [self.names] * len(images) if queries is None else queries
        results: list[Any] = [None] * len(images)
        with torch.inference_mode():
            if self.zero_shot:
                # one forward per distinct query list (the processor pads texts per image, so images asked for
                # different names cannot share a batch); an image's boxes do not depend on its batch-mates
                groups: dict[tuple[str, ...], list[int]] = {}
                for i, asked in enumerate(queries):
                    if asked:  # an image asked for nothing (a caption without nouns) gets no boxes, no forward
                        groups.setdefault(tuple(asked), []).append(i)
                for asked, rows in groups.items():
                    texts = [list(asked)] * len(rows)
                    inputs = self.processor(text=texts, images=[images[i] for i in rows], return_tensors="pt",
                                            padding=True)
                    found = self.processor.post_process_grounded_object_detection(
                        self.model(**inputs), threshold=self.threshold, target_sizes=[(h, w)] * len(rows),
                        text_labels=texts)
                    for i, res in zip(rows, found, strict=True):
                        results[i] = res
            else:
                inputs = self.processor(images=list(images), return_tensors="pt")
                outputs = self.model(**inputs)
                results = self.processor.post_process_object_detection(outputs, threshold=self.threshold,
                                                                       target_sizes=[(h, w)] * len(images))
        out = []
        for res, asked in zip(results, queries, strict=True):
            found = []
            if res is None:
                out.append(found)
                continue
            for k in np.argsort(-res["scores"].numpy(), kind="stable"):
                x1, y1, x2, y2 = res["boxes"][k].tolist()
                label = asked[int(res["labels"][k])] if self.zero_shot else \
                    clean_name(self.model.config.id2label[int(res["labels"][k])])
                x1, x2 = sorted((min(max(x1 / w, 0.0), 1.0), min(max(x2 / w, 0.0), 1.0)))
                y1, y2 = sorted((min(max(y1 / h, 0.0), 1.0), min(max(y2 / h, 0.0), 1.0)))
                found.append((label, x1, y1, x2, y2))
            out.append(found)
        return out


class HFSam:
    """SAM (transformers ``SamModel``) from a local directory: one mask per box prompt."""

    def __init__(self, path: str) -> None:
        from transformers import SamModel, SamProcessor

        directory = require_files(path, ("config.json",), "SAM model (sam_path)", HOW_TO_GET)
        require_files(directory, ("model.safetensors", "pytorch_model.bin"), "SAM weights", HOW_TO_GET)
        require_files(directory, ("preprocessor_config.json", "processor_config.json"), "SAM processor", HOW_TO_GET)
        self.processor = SamProcessor.from_pretrained(directory)
        self.model = SamModel.from_pretrained(directory).eval()

    def __call__(self, image: np.ndarray, boxes_px: list[list[float]]) -> np.ndarray:
        """image (H, W, 3) uint8, boxes [[x1, y1, x2, y2]] in pixels -> masks (k, H, W) bool."""
        import torch

        inputs = self.processor(images=image, input_boxes=[boxes_px], return_tensors="pt")
        with torch.inference_mode():
            outputs = self.model(**inputs, multimask_output=False)
        masks = self.processor.image_processor.post_process_masks(
            outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])[0]
        return masks[:, 0].numpy().astype(bool)  # (k, H, W)


# --- extractors -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorQueries:
    """What an open-vocabulary detector is asked to find in a set of n images.

    ``vocabulary``: every name the detector may write (the latents' object names, which the parser and the prior's
    grammar accept); ``per_image``: each image's own queries, n lists, an empty one for an image asked for nothing
    (None: every image is asked for the whole vocabulary).
    """

    vocabulary: tuple[str, ...]
    per_image: list[list[str]] | None = None

    def rows(self, rows: slice) -> list[list[str]] | None:
        """The queries of the images ``rows`` (a batch), or None (the whole vocabulary)."""
        return None if self.per_image is None else self.per_image[rows]

    def counts(self) -> dict[str, int]:
        """``{NO_QUERY_COUNT: images asked for nothing}`` with per-image queries, else ``{}``."""
        return {} if self.per_image is None else {NO_QUERY_COUNT: sum(not asked for asked in self.per_image)}


def detector_queries(spec: Mapping[str, Any], ctx: ImageContext) -> DetectorQueries:
    """The detector's queries for the images of ``ctx`` under ``spec["queries"]`` (:data:`QUERIES`):

    - ``palette`` (default): every image is asked for every '<colour> <shape>' of the offline vocabulary;
    - ``class_name``: each image for its own class name (``ctx.class_names[label]``); the vocabulary is every class
      name;
    - ``caption_nouns``: each image for the noun phrases of its own caption
      (:func:`kaleido.latents.nouns.caption_nouns`, at most ``max_queries`` phrases of ``max_query_words`` words);
      the vocabulary is every phrase of the set's captions, sorted (so the union over the parts of a sharded set is
      the whole set's vocabulary). A caption without a noun phrase asks for nothing: that image gets no objects.

    Names are cleaned to the formats' name alphabet (:func:`clean_name`).
    """
    how = spec.get("queries", "palette")
    if how == "palette":
        return DetectorQueries(tuple(object_names(spec)))
    if how == "class_name":
        if not ctx.class_names:
            raise InputError("queries: class_name needs the data set's class names (imagefolder: its class_map)")
        vocabulary = tuple(clean_name(name) for name in ctx.class_names)
        return DetectorQueries(vocabulary, [[vocabulary[int(label)]] for label in ctx.labels])
    if how == "caption_nouns":
        if ctx.captions is None:
            raise InputError("queries: caption_nouns needs a caption per image; the data set has none (data sets "
                             "with captions: captions, shapes)")
        max_queries = spec.get("max_queries", DEFAULT_MAX_QUERIES)
        max_words = spec.get("max_query_words", DEFAULT_MAX_WORDS)
        per_image = [list(dict.fromkeys(clean_name(phrase) for phrase in caption_nouns(str(text), max_queries,
                                                                                       max_words)))
                     for text in ctx.captions]
        return DetectorQueries(tuple(sorted({name for asked in per_image for name in asked})), per_image)
    raise InputError(f"queries: {how!r}; accepted: {list(QUERIES)}")


def report_unasked(latent: str, queries: DetectorQueries, ctx: ImageContext) -> None:
    """Say on stderr (the stage's log) how many images were asked for nothing, with an example caption."""
    unasked = [i for i, asked in enumerate(queries.per_image or []) if not asked]
    if unasked:
        example = f" (e.g. {str(ctx.captions[unasked[0]])[:80]!r})" if ctx.captions is not None else ""
        print(f"{latent}: {len(unasked)} of {len(queries.per_image)} images have no detector query{example}; they "
              f"get no objects ({NO_QUERY_COUNT} in the quality record)", file=sys.stderr)


class _ObjectExtractor(LatentType):
    latent = ""
    pretrained_keys: set[str] = set()

    def per_item(self, spec: dict[str, Any]) -> bool:
        """Each image's string depends on that image alone: the stage may extract the set in parts."""
        return True

    @property
    def keys(self) -> set[str]:
        return COMMON_KEYS | SEGMENT_KEYS | self.pretrained_keys | {"order"}

    def validate(self, spec: dict[str, Any], where: str) -> None:
        from kaleido.checks import check_keys

        check_keys(spec, self.keys, where)
        check_common(spec, where, ("offline", "pretrained"))
        check_segment(spec, where)
        check_choice(spec, "order", where, ORDERS)
        check_choice(spec, "queries", where, QUERIES)
        check_number(spec, "score_threshold", where)
        for key in sorted(NOUN_KEYS & set(spec)):
            check_int(spec, key, where)
            if spec.get("queries", "palette") != "caption_nouns":
                raise ConfigError(f"{where}.{key}: applies to queries: caption_nouns only (queries is "
                                  f"{spec.get('queries', 'palette')!r}); remove it or set queries: caption_nouns")
        for key in self.pretrained_keys - {"score_threshold"} - NOUN_KEYS:
            if key in spec and (not isinstance(spec[key], str) or not spec[key]):
                raise ConfigError(f"{where}.{key}: {spec[key]!r} is not a path")
        if spec.get("source", "offline") == "pretrained":
            self._check_pretrained(spec, where)

    def _check_pretrained(self, spec: dict[str, Any], where: str) -> None:
        raise NotImplementedError

    def _box(self, item: Any) -> tuple[float, float, float, float]:
        """A parsed item's axis-aligned box (x1, y1, x2, y2) in [0, 1], for matching against the ground truth."""
        raise NotImplementedError

    def quality(self, strings: Sequence[str], truth: Sequence[Sequence[GTObject]],
                names: list[str] | None) -> dict[str, Any]:
        parsed = [self.parse(s, names) for s in strings]
        return object_quality([[(item.name, self._box(item)) for item in p] for p in parsed], truth)


class BBoxExtractor(_ObjectExtractor):
    """``bbox``: ``name (x1, y1, x2, y2); ...``, objects largest first (``order: area``) or as found
    (``order: found``)."""

    latent = "bbox"
    pretrained_keys = DETECTOR_KEYS
    grammar = fmt.ItemFormat(bounds=((0, fmt.COORD_MAX),) * 4, at_least={2: 0, 3: 1}, at_most={})

    def _check_pretrained(self, spec: dict[str, Any], where: str) -> None:
        if "detector_path" not in spec:
            raise ConfigError(f"{where}: source 'pretrained' needs detector_path (a local Hugging Face object "
                              "detector directory)")

    def parse(self, text: str, names: Collection[str] | None = None, num_tokens: int = 32,
              codebook_size: int | None = None) -> list[fmt.Box]:
        return fmt.parse_bbox(text, names)

    def write(self, parsed: Sequence[fmt.Box]) -> str:
        return fmt.format_bbox(parsed)

    def _box(self, item: fmt.Box) -> tuple[float, float, float, float]:
        return tuple(v / fmt.COORD_MAX for v in (item.x1, item.y1, item.x2, item.y2))

    def extract_strings(self, images: np.ndarray, ctx: ImageContext, spec: dict[str, Any], seed: int) -> LatentStrings:
        check_images(images)
        spec = {**COMMON_DEFAULTS, "order": "area", **spec}
        if spec["source"] == "offline":
            strings = map_batched(images, spec["batch_size"], "bbox (offline)", lambda batch, _: [
                fmt.format_bbox(ordered(boxes_of_segments(segments_of(img, spec)), spec["order"])) for img in batch])
            return LatentStrings(strings, names=object_names(spec))
        queries = detector_queries(spec, ctx)
        report_unasked(self.latent, queries, ctx)
        detector = loaded(HFDetector, spec["detector_path"], spec.get("score_threshold", 0.5), queries.vocabulary)

        def run(batch: np.ndarray, rows: slice) -> list[str]:
            return [fmt.format_bbox(ordered([fmt.Box(name, *(fmt.to_unit(v) for v in xyxy)) for name, *xyxy in found],
                                            spec["order"]))
                    for found in detector(batch, queries.rows(rows))]

        return LatentStrings(map_batched(images, spec["batch_size"], "bbox (detector)", run), names=detector.names,
                             counts=queries.counts())


class BlobExtractor(_ObjectExtractor):
    """``blob``: ``name (xc, yc, r_major, r_minor, theta); ...``."""

    latent = "blob"
    pretrained_keys = DETECTOR_KEYS | {"sam_path"}
    grammar = fmt.ItemFormat(bounds=((0, fmt.COORD_MAX),) * 4 + ((0, 179),), at_least={}, at_most={3: 2})

    def _check_pretrained(self, spec: dict[str, Any], where: str) -> None:
        if "sam_path" not in spec:
            raise ConfigError(f"{where}: source 'pretrained' needs sam_path (a local Hugging Face SAM directory)")

    def parse(self, text: str, names: Collection[str] | None = None, num_tokens: int = 32,
              codebook_size: int | None = None) -> list[fmt.Blob]:
        return fmt.parse_blob(text, names)

    def write(self, parsed: Sequence[fmt.Blob]) -> str:
        return fmt.format_blob(parsed)

    def _box(self, item: fmt.Blob) -> tuple[float, float, float, float]:
        return blob_box(*(v / fmt.COORD_MAX for v in (item.xc, item.yc, item.r_major, item.r_minor)), item.theta)

    def quality(self, strings: Sequence[str], truth: Sequence[Sequence[GTObject]],
                names: list[str] | None) -> dict[str, Any]:
        return {**super().quality(strings, truth, names), "box_from": "ellipse bounding box"}

    def extract_strings(self, images: np.ndarray, ctx: ImageContext, spec: dict[str, Any], seed: int) -> LatentStrings:
        check_images(images)
        spec = {**COMMON_DEFAULTS, "order": "area", **spec}
        if spec["source"] == "offline":
            strings = map_batched(images, spec["batch_size"], "blob (offline)", lambda batch, _: [
                fmt.format_blob(ordered([blob_from_mask(s.name, s) for s in segments_of(img, spec)], spec["order"]))
                for img in batch])
            return LatentStrings(strings, names=object_names(spec))
        sam = loaded(HFSam, spec["sam_path"])
        queries, detector = None, None
        if "detector_path" in spec:  # else SAM is prompted with the offline finder's boxes
            queries = detector_queries(spec, ctx)
            report_unasked(self.latent, queries, ctx)
            detector = loaded(HFDetector, spec["detector_path"], spec.get("score_threshold", 0.5),
                              queries.vocabulary)
        h, w = images.shape[1:3]

        def run(batch: np.ndarray, rows: slice) -> list[str]:
            if detector is not None:
                found = detector(batch, queries.rows(rows))
            else:
                found = [[(s.name, *s.box()) for s in segments_of(img, spec)] for img in batch]
            out = []
            for img, objs in zip(batch, found, strict=True):
                if not objs:
                    out.append("")
                    continue
                masks = sam(img, [[x1 * w, y1 * h, x2 * w, y2 * h] for _, x1, y1, x2, y2 in objs])
                blobs = [blob_from_mask(name, Segment(m, np.zeros(3), "", "")) for (name, *_), m in
                         zip(objs, masks, strict=True) if m.any()]
                out.append(fmt.format_blob(ordered(blobs, spec["order"])))
            return out

        names = detector.names if detector is not None else object_names(spec)
        return LatentStrings(map_batched(images, spec["batch_size"], "blob (SAM)", run), names=names,
                             counts=queries.counts() if queries is not None else {})


EXTRACTORS.register("bbox")(BBoxExtractor())
EXTRACTORS.register("blob")(BlobExtractor())
