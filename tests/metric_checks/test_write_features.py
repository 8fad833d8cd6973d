"""Feature extraction written chunk by chunk (metrics.extract.write_features): the values of one pass over every
item, the file readable whole and in place, memory bounded by the chunk."""

from __future__ import annotations

import numpy as np
import pytest
from img_nets import random_images, save_random_inception

from metrics.extract import configured_net, net_outputs, write_features
from metrics.io import load_npz
from metrics.store import load_data, npz_member_rows, save_data


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    return save_random_inception(tmp_path_factory.mktemp("w") / "inception.pth")


def test_chunks_give_the_one_pass_values(tmp_path, inception_weights, one_torch_thread) -> None:
    """Two inputs (one sharded), chunks of 8 items in batches of 4: bit for bit the features and logits of one pass
    over each input (the same batches), in input order, and the meta callback gets the network settings."""
    first, second = random_images(21, seed=0), random_images(6, seed=1)
    save_data(tmp_path / "a.npz", {"x": first, "labels": np.arange(21) % 3}, {}, shard_size=5)
    save_data(tmp_path / "b.npz", {"x": second, "labels": np.full(6, 7)}, {})
    options = {"weights": str(inception_weights), "batch_size": 4, "allow_unverified": True}  # random weights
    write_features(tmp_path / "f.npz", "inception", [tmp_path / "a.npz", tmp_path / "b.npz"],
                   lambda settings: {"config": settings}, chunk_items=10, **options)
    out = load_npz(tmp_path / "f.npz")
    net = configured_net("inception", **options)
    per_file = [net_outputs(net, first), net_outputs(net, second)]  # one pass per input: the earlier extraction
    assert np.array_equal(out["labels"], np.r_[np.arange(21) % 3, np.full(6, 7)])
    for key in ("features", "logits"):
        assert out[key].dtype == np.float32, key
        assert np.array_equal(out[key], np.concatenate([part[key] for part in per_file])), key  # same batches
    assert out["meta"]["config"]["feature_net"] == "inception" and len(out["meta"]["config"]["inputs"]) == 2
    in_place = npz_member_rows(tmp_path / "f.npz", "features")  # the evaluate stage's reader (zip64 members)
    assert np.array_equal(in_place[[26, 0, 13]], out["features"][[26, 0, 13]])
    assert not list(tmp_path.glob(".f.npz.parts.*")), "the chunk parts were not removed"


@pytest.mark.parametrize("pad", [False, True])
def test_batches_through_the_buffer_ring_are_the_items_in_order(tmp_path, pad) -> None:
    """``device_batches`` (the feature networks' feed) on a sharded set and on an array, drawn under inference mode
    as ``run_batched`` does: every batch holds its items, the ring's buffers are refilled only after use, and the
    padded last batch repeats its last item."""
    import torch

    from metrics.features._batching import device_batches

    items = random_images(23, seed=4, size=8)
    save_data(tmp_path / "d.npz", {"x": items, "labels": np.arange(23)}, {}, shard_size=5)
    for source in (load_data(tmp_path / "d.npz")["x"], items):
        got = []
        with torch.inference_mode():
            for rows, batch in device_batches(source, 2, pad=pad, device=torch.device("cpu")):
                got.append((rows, batch.numpy().copy()))
        assert [rows for rows, _ in got] == [2] * 11 + [1]
        assert np.array_equal(np.concatenate([batch[:rows] for rows, batch in got]), items)
        assert got[-1][1].shape[0] == (2 if pad else 1)
        if pad:
            assert np.array_equal(got[-1][1][1], items[-1])


def test_a_corrupted_shard_is_refused_and_nothing_is_written(tmp_path) -> None:
    """The shards' SHA-256 are checked beside the extraction: a shard of the right size with one changed byte (which
    the index checks alone pass) still fails the stage by name, and no output (nor its parts) is left behind."""
    from metrics.errors import InputError

    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    save_data(tmp_path / "v.npz", {"x": x, "labels": np.arange(50)}, {}, shard_size=20)
    shard = tmp_path / "v.x-00001-of-00003.npy"
    raw = bytearray(shard.read_bytes())
    raw[-1] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"v\.x-00001-of-00003\.npy: checksum mismatch"):
        write_features(tmp_path / "f.npz", "identity", [tmp_path / "v.npz"], lambda s: {}, chunk_items=7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npz", *(f"v.x-0000{k}-of-00003.npy" for k in range(3))]


def test_vector_items_and_empty_input(tmp_path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    save_data(tmp_path / "v.npz", {"x": x, "labels": np.arange(50)}, {})
    write_features(tmp_path / "f.npz", "identity", [tmp_path / "v.npz"], lambda s: {}, chunk_items=7)
    assert np.array_equal(load_npz(tmp_path / "f.npz")["features"], x)
    save_data(tmp_path / "e.npz", {"x": x[:0], "labels": np.arange(0)}, {})
    with pytest.raises(ValueError, match="no items to extract features of"):
        write_features(tmp_path / "g.npz", "identity", [tmp_path / "e.npz"], lambda s: {})
    assert not (tmp_path / "g.npz").exists()


def test_compile_choice_is_resolved_by_device_and_set_size() -> None:
    from metrics.errors import InputError
    from metrics.extract import COMPILE_MIN_ITEMS, resolve_compile

    assert resolve_compile("auto", "cuda", COMPILE_MIN_ITEMS) is True
    assert resolve_compile("auto", "cuda:1", COMPILE_MIN_ITEMS - 1) is False  # a sample shard: not worth ~40 s
    assert resolve_compile("auto", "cpu", 10 * COMPILE_MIN_ITEMS) is False
    assert resolve_compile(True, "cpu", 1) is True  # as asked (run_batched compiles on CUDA only)
    with pytest.raises(InputError, match="'yes'.*expected one of"):
        resolve_compile("yes", "cuda", 1)


def test_compile_on_the_cpu_is_the_eager_extraction(tmp_path, inception_weights, one_torch_thread) -> None:
    """run_batched compiles on CUDA only: on the CPU ``compile=True`` gives the eager values bit for bit, and the
    record says what was asked."""
    save_data(tmp_path / "a.npz", {"x": random_images(7, seed=2), "labels": np.zeros(7, dtype=int)}, {})
    options = {"weights": str(inception_weights), "batch_size": 4, "allow_unverified": True}
    for flag in (True, False):
        write_features(tmp_path / f"{flag}.npz", "inception", [tmp_path / "a.npz"],
                       lambda settings: {"config": settings}, compile=flag, **options)
    on, off = load_npz(tmp_path / "True.npz"), load_npz(tmp_path / "False.npz")
    assert np.array_equal(on["features"], off["features"])
    assert on["meta"]["config"]["feature_compile"] is True and off["meta"]["config"]["feature_compile"] is False
