"""Pretrained paths of the image latent extractors, on tiny random models saved in the real on-disk format.

Each test builds a model from a config, saves it with ``save_pretrained`` (or TorchScript + safetensors for the VQ
tokenizer) into a temp dir and runs the extractor through its real loading code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from latent_images import draw

from kaleido.latents import EXTRACTORS
from kaleido.latents import formats as fmt
from kaleido.latents.images import ImageContext
from metrics.errors import InputError

REPO = Path(__file__).resolve().parent.parent
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return draw(4, seed=2)


def _ctx(d):
    return ImageContext(d["labels"], ["shapes"])


def test_detr_detector(tmp_path, data):
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    names = ["red circle", "Blue Square!"]
    cfg = DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                     backbone_config=ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16],
                                                  depths=[1, 1], out_features=["stage2"]),
                     d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=3,
                     id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    torch.manual_seed(0)
    model = DetrForObjectDetection(cfg)
    with torch.no_grad():  # every query predicts class 1 at box (cx, cy, w, h) = (0.25, 0.5, 0.2, 0.4)
        last = model.bbox_predictor.layers[-1]
        last.weight.zero_()
        last.bias.copy_(torch.logit(torch.tensor([0.25, 0.5, 0.2, 0.4])))
        model.class_labels_classifier.weight.zero_()
        model.class_labels_classifier.bias.copy_(torch.tensor([0.0, 6.0, -6.0]))
    model.save_pretrained(tmp_path / "detr")
    DetrImageProcessor(size={"shortest_edge": 32, "longest_edge": 64}).save_pretrained(tmp_path / "detr")
    spec = {"source": "pretrained", "detector_path": str(tmp_path / "detr"), "score_threshold": 0.5,
            "batch_size": 3}
    EXTRACTORS.get("bbox").validate(spec, "bbox")
    res = EXTRACTORS.get("bbox").extract_strings(data["x"], _ctx(data), spec, 0)
    assert res.names == ["blue square", "red circle"]
    assert list(res.strings) == ["; ".join(["blue square (150, 300, 350, 700)"] * 3)] * 4
    assert fmt.parse_bbox(res.strings[0], res.names)[0] == fmt.Box("blue square", 150, 300, 350, 700)
    with pytest.raises(InputError, match="model.safetensors.*huggingface-cli download"):
        (tmp_path / "detr" / "model.safetensors").unlink()
        EXTRACTORS.get("bbox").extract_strings(data["x"], _ctx(data), spec, 0)


def test_sam_blobs(tmp_path, data):
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    from kaleido.latents.objects import HFSam, blob_from_mask, segments_of
    from kaleido.latents.segment import Segment

    cfg = SamConfig(
        vision_config=SamVisionConfig(hidden_size=16, output_channels=8, num_hidden_layers=1, num_attention_heads=2,
                                      image_size=64, patch_size=16, mlp_dim=32, global_attn_indexes=[0],
                                      window_size=0, num_pos_feats=4),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=8, image_size=64, patch_size=16,
                                                     mask_input_channels=4),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                                 mlp_dim=16, iou_head_hidden_dim=8))
    torch.manual_seed(0)
    SamModel(cfg).save_pretrained(tmp_path / "sam")
    processor = SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                  mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})
    SamProcessor(image_processor=processor).save_pretrained(tmp_path / "sam")
    spec = {"source": "pretrained", "sam_path": str(tmp_path / "sam")}
    EXTRACTORS.get("blob").validate(spec, "blob")
    res = EXTRACTORS.get("blob").extract_strings(data["x"], _ctx(data), spec, 0)
    sam = HFSam(spec["sam_path"])
    h, w = data["x"].shape[1:3]
    for img, s in zip(data["x"], res.strings, strict=True):
        segs = segments_of(img, {})
        masks = sam(img, [[b[0] * w, b[1] * h, b[2] * w, b[3] * h] for b in (g.box() for g in segs)])
        assert masks.shape == (len(segs), h, w)
        expected = [blob_from_mask(g.name, Segment(m, np.zeros(3), "", "")) for g, m in zip(segs, masks, strict=True)
                    if m.any()]
        assert fmt.parse_blob(s, res.names) == expected
    with pytest.raises(InputError, match="SAM model"):
        EXTRACTORS.get("blob").extract_strings(data["x"], _ctx(data), {**spec, "sam_path": str(tmp_path / "no")}, 0)


def test_blip_captioner(tmp_path, data):
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "picture", "of", "red", "circle", "square", "blue",
             "the", "shapes", "describe", "this", "image", "in", "50", "to", "80", "words", "."]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    cfg = BlipConfig(text_config=dict(vocab_size=len(words), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, encoder_hidden_size=16,
                                      max_position_embeddings=64, bos_token_id=2, sep_token_id=3, pad_token_id=0),
                     vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    BlipForConditionalGeneration(cfg).save_pretrained(tmp_path / "blip")
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(tmp_path / "blip")
    spec = {"source": "pretrained", "captioner_path": str(tmp_path / "blip"), "max_new_tokens": 8}
    EXTRACTORS.get("text").validate(spec, "text")
    res = EXTRACTORS.get("text").extract_strings(data["x"], _ctx(data), spec, 0)
    assert res.strings.shape == (4,) and res.strings.dtype.kind == "U"
    for s in res.strings:
        assert 1 <= len(s.split()) <= 8 and set(s.split()) <= set(words) and "describe" not in s  # prompt stripped
    with pytest.raises(InputError, match="captioner weights"):
        (tmp_path / "blip" / "model.safetensors").unlink()
        EXTRACTORS.get("text").extract_strings(data["x"], _ctx(data), spec, 0)


@pytest.mark.parametrize("export", ["torch.export", "torchscript"])
def test_vq_tokenizer(tmp_path, data, export):
    import warnings

    from safetensors.torch import save_file

    torch.manual_seed(0)
    encoder = torch.nn.Conv2d(3, 6, kernel_size=(8, 4), stride=(8, 4))  # (N, 3, 32, 32) -> (N, 6, 4, 8): 32 tokens
    (tmp_path / "vq").mkdir()
    x = torch.zeros(2, 3, 32, 32)
    if export == "torch.export":
        batch = torch.export.Dim("batch")
        program = torch.export.export(encoder, (x,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(tmp_path / "vq" / "encoder.pt2"))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated in torch 2.x, still loadable
            torch.jit.trace(encoder, x).save(str(tmp_path / "vq" / "encoder.pt"))
    codebook = torch.randn(16, 6)
    save_file({"codebook": codebook}, str(tmp_path / "vq" / "codebook.safetensors"))
    spec = {"source": "pretrained", "vq_path": str(tmp_path / "vq"), "batch_size": 3}
    EXTRACTORS.get("voken").validate(spec, "voken")
    res = EXTRACTORS.get("voken").extract_strings(data["x"], _ctx(data), spec, 0)
    with torch.no_grad():  # independent: features row-major over (4, 8), brute-force nearest centre
        feats = encoder(torch.from_numpy(data["x"]).permute(0, 3, 1, 2).float() / 127.5 - 1).numpy()
    feats = feats.reshape(4, 6, 32).transpose(0, 2, 1)
    expected = ((feats[:, :, None, :] - codebook.numpy()) ** 2).sum(-1).argmin(-1)
    np.testing.assert_array_equal(np.array([fmt.parse_voken(s, 32, 16) for s in res.strings]), expected)
    assert len(res.added_tokens) == 16
    (tmp_path / "vq" / "codebook.safetensors").unlink()
    with pytest.raises(InputError, match="codebook.safetensors"):
        EXTRACTORS.get("voken").extract_strings(data["x"], _ctx(data), spec, 0)


def _tiny_owlvit(path):
    """A random-init OWL-ViT with a letters-only CLIP tokenizer, saved like a hub checkpoint at ``path``."""
    from transformers import (
        CLIPTokenizer,
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
        OwlViTProcessor,
    )

    # OWL-ViT masks a query whose first token id is 0, so id 0 is a dummy entry
    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    cfg = OwlViTConfig(text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                                        bos_token_id=1, eos_token_id=2, pad_token_id=2),
                       vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    OwlViTForObjectDetection(cfg).save_pretrained(path)
    OwlViTProcessor(image_processor=OwlViTImageProcessor(size={"height": 32, "width": 32},
                                                         crop_size={"height": 32, "width": 32}),
                    tokenizer=tokenizer).save_pretrained(path)
    return path


def test_owlvit_queried_with_object_names(tmp_path, data):
    _tiny_owlvit(tmp_path / "owl")
    spec = {"source": "pretrained", "detector_path": str(tmp_path / "owl"), "score_threshold": 1e-6,
            "palette": {"red": [255, 0, 0], "blue": [0, 0, 255]}, "shapes": ["circle", "square"],
            "order": "found"}  # the detector's own (score) order, compared with it below
    EXTRACTORS.get("bbox").validate(spec, "bbox")
    res = EXTRACTORS.get("bbox").extract_strings(data["x"], _ctx(data), spec, 0)
    assert res.names == ["red circle", "red square", "blue circle", "blue square"]
    parsed = [fmt.parse_bbox(s, res.names) for s in res.strings]
    assert all(1 <= len(p) <= 16 for p in parsed)  # at most one box per 8x8 patch (4 x 4 patches)
    from kaleido.latents.objects import HFDetector

    direct = HFDetector(spec["detector_path"], 1e-6, res.names)(data["x"][:1])[0]
    assert [b.name for b in parsed[0]] == [name for name, *_ in direct]


def test_the_imagenet_detector_is_asked_for_each_image_s_own_class(tmp_path, data, monkeypatch):
    """``queries: class_name`` (config/imagenet256.yaml): OWL is asked for the image's class_map name, and the
    strings name only classes, never the shapes vocabulary."""
    from kaleido import config
    from kaleido.latents.objects import HFDetector

    paper = config.load(REPO / "config" / "imagenet256.yaml")["experiments"]["imagenet256"]["latents"]
    assert paper["bbox"]["queries"] == paper["blob"]["queries"] == "class_name"
    asked = []
    call = HFDetector.__call__
    monkeypatch.setattr(HFDetector, "__call__", lambda self, images, queries=None: asked.extend(queries) or
                        call(self, images, queries))
    classes = ["rhinoceros beetle", "Tench, Tinca tinca"]
    spec = {"source": "pretrained", "detector_path": str(_tiny_owlvit(tmp_path / "owl")), "score_threshold": 1e-6,
            "queries": "class_name", "order": "found"}
    EXTRACTORS.get("bbox").validate(spec, "bbox")
    labels = np.arange(len(data["x"])) % 2
    res = EXTRACTORS.get("bbox").extract_strings(data["x"], ImageContext(labels, classes), spec, 0)
    assert res.names == ["rhinoceros beetle", "tench tinca tinca"]
    assert asked == [[res.names[label]] for label in labels]  # each image: its own class, nothing else
    for label, text in zip(labels, res.strings, strict=True):
        assert {box.name for box in fmt.parse_bbox(str(text), res.names)} <= {res.names[label]}
    with pytest.raises(InputError, match="class_map"):
        EXTRACTORS.get("bbox").extract_strings(data["x"], ImageContext(labels, None), spec, 0)



#: a CC12M-like caption set: nouns with modifiers, a possessive, a verb, and a caption that names nothing
CAPTIONS = np.array(["Dog laying on a human's lap", "Here it is!", "a red car and two blue bicycles",
                     "a cat sat on the mat"])
CAPTION_NOUNS = [["dog", "human lap"], [], ["red car", "blue bicycles"], ["cat", "mat"]]


def _caption_ctx(captions):
    """The context the ``captions`` data set gives: each item its own condition, the caption as its name."""
    return ImageContext(np.arange(len(captions)), [str(c) for c in captions], captions)


def test_the_cc12m_detector_is_asked_for_each_caption_s_nouns(tmp_path, data, monkeypatch):
    """``queries: caption_nouns`` (config/cc12m.yaml): OWL is asked, per image, for the noun phrases of the image's
    own caption and nothing else; a caption without a noun phrase asks nothing, gets no boxes, and is counted."""
    from kaleido import config
    from kaleido.latents.objects import NO_QUERY_COUNT, HFDetector

    paper = config.load(REPO / "config" / "cc12m.yaml")["experiments"]["cc12m"]["latents"]
    assert paper["bbox"]["queries"] == paper["blob"]["queries"] == "caption_nouns"
    asked = []
    call = HFDetector.__call__
    monkeypatch.setattr(HFDetector, "__call__", lambda self, images, queries=None: asked.extend(queries) or
                        call(self, images, queries))
    spec = {"source": "pretrained", "detector_path": str(_tiny_owlvit(tmp_path / "owl")), "score_threshold": 1e-6,
            "queries": "caption_nouns", "order": "found", "batch_size": 3}
    EXTRACTORS.get("bbox").validate(spec, "bbox")
    res = EXTRACTORS.get("bbox").extract_strings(data["x"], _caption_ctx(CAPTIONS), spec, 0)
    assert asked == CAPTION_NOUNS  # each image: its own caption's nouns, in caption order
    assert res.names == sorted({name for nouns in CAPTION_NOUNS for name in nouns})
    assert res.counts == {NO_QUERY_COUNT: 1}
    assert res.strings[1] == ""  # no query, no boxes: no detector call for it either
    for nouns, text in zip(CAPTION_NOUNS, res.strings, strict=True):
        found = {box.name for box in fmt.parse_bbox(str(text), res.names)}
        assert found <= set(nouns) and (found or not nouns)  # threshold 1e-6: every asked image gets boxes
    asked.clear()
    short = {**spec, "max_queries": 1, "max_query_words": 1}
    EXTRACTORS.get("bbox").validate(short, "bbox")
    EXTRACTORS.get("bbox").extract_strings(data["x"], _caption_ctx(CAPTIONS), short, 0)
    assert asked == [["dog"], [], ["car"], ["cat"]]
    with pytest.raises(InputError, match="caption_nouns needs a caption per image"):
        EXTRACTORS.get("bbox").extract_strings(data["x"], ImageContext(np.arange(4), ["a"] * 4), spec, 0)


def test_caption_noun_options_need_caption_nouns(tmp_path):
    from kaleido.errors import ConfigError

    spec = {"source": "pretrained", "detector_path": "owl", "queries": "class_name", "max_queries": 4}
    with pytest.raises(ConfigError, match=r"bbox.max_queries: applies to queries: caption_nouns only \(queries is "
                                          r"'class_name'\)"):
        EXTRACTORS.get("bbox").validate(spec, "bbox")
    with pytest.raises(ConfigError, match=r"blob.max_query_words: 0 is not an integer >= 1"):
        EXTRACTORS.get("blob").validate({"queries": "caption_nouns", "max_query_words": 0}, "blob")
    with pytest.raises(ConfigError, match=r"bbox.queries: 'nouns'; accepted: \['palette', 'class_name', "
                                          r"'caption_nouns'\]"):
        EXTRACTORS.get("bbox").validate({"queries": "nouns"}, "bbox")


def test_caption_noun_parts_of_a_sharded_set_merge_into_the_whole_set_s_latents(tmp_path, data):
    """A sharded caption set extracted part by part (the stage's extraction jobs): each part's vocabulary is its own
    captions' nouns; the merged vocabulary, strings and no-query count equal one call over the whole set."""
    from kaleido.latents.stage import extract_in_parts, image_context
    from metrics.store import ShardedArray, load_data, save_data

    save_data(tmp_path / "train.npz", {"x": data["x"], "labels": np.arange(4), "class_names": CAPTIONS,
                                       "captions": CAPTIONS}, {"test": 1}, shard_size=2)
    sharded = load_data(tmp_path / "train.npz")
    assert isinstance(sharded["x"], ShardedArray) and len(sharded["x"].files) == 2
    spec = {"source": "pretrained", "detector_path": str(_tiny_owlvit(tmp_path / "owl")), "score_threshold": 1e-6,
            "queries": "caption_nouns"}
    extractor = EXTRACTORS.get("bbox")
    parts = extract_in_parts(extractor, "bbox", sharded["x"], image_context(sharded), spec, 0,
                             tmp_path / "bbox.npz", {"key": 1})
    whole = extractor.extract_strings(data["x"], _caption_ctx(CAPTIONS), spec, 0)
    assert parts.names == whole.names and parts.counts == whole.counts == {"images_without_queries": 1}
    np.testing.assert_array_equal(parts.strings, whole.strings)
