"""The streaming data path: shards read on demand (:class:`metrics.store.ShardedArray`), a data stage that writes
one shard at a time and resumes, and the training order (:class:`kaleido.data.batches.StepBatches`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kaleido.data.batches import StepBatches, stream
from metrics.errors import InputError
from metrics.store import ShardedArray, load_data, save_data


@pytest.fixture()
def items():
    return np.random.default_rng(0).integers(0, 256, size=(103, 4, 5, 3), dtype=np.uint8)


def test_sharded_array_reads_like_the_array(tmp_path, items):
    save_data(tmp_path / "d.npz", {"x": items, "labels": np.arange(103)}, {"m": 1}, shard_size=10)
    x = load_data(tmp_path / "d.npz")["x"]
    assert isinstance(x, ShardedArray) and x.shape == items.shape and x.dtype == np.uint8 and len(x) == 103
    order = np.random.default_rng(1).permutation(103)[:57]
    for key in (5, -1, slice(None), slice(7, 33), slice(95, 200), order, np.array([3, 3, 4, 90, 2]),
                np.arange(103) % 2 == 0, np.array([], dtype=np.int64)):
        np.testing.assert_array_equal(x[key], items[key])
    np.testing.assert_array_equal(np.asarray(x), items)
    with pytest.raises(IndexError, match="out of range"):
        x[np.array([103])]
    with pytest.raises(IndexError, match="step 1"):
        x[::2]
    import pickle

    np.testing.assert_array_equal(pickle.loads(pickle.dumps(x))[order], items[order])  # into loader workers


def test_rows_read_straight_into_a_given_buffer(tmp_path, items):
    """``read_into``: the feature extractors' reads into pinned buffers, across shard boundaries and at the end."""
    save_data(tmp_path / "d.npz", {"x": items, "labels": np.arange(103)}, {}, shard_size=10)
    x = load_data(tmp_path / "d.npz")["x"]
    buffer = np.zeros((25, *items.shape[1:]), dtype=np.uint8)
    for start, count in ((0, 25), (7, 25), (95, 8), (102, 1), (40, 0)):
        assert x.read_into(start, buffer[:count]) is not None
        np.testing.assert_array_equal(buffer[:count], items[start:start + count])
    with pytest.raises(IndexError, match=r"rows 100\.\.124 out of range: the array has 103 items"):
        x.read_into(100, buffer)
    with pytest.raises(ValueError, match=r"out: float32 .*expected a C-contiguous uint8 \(m, 4, 5, 3\) array"):
        x.read_into(0, buffer.astype(np.float32))
    with pytest.raises(ValueError, match="C-contiguous: False"):
        x.read_into(0, buffer[::2])


def test_killed_data_stage_keeps_its_shards_and_a_changed_one_rewrites(tmp_path, items):
    class Failing:
        """x that fails after ``fail_at`` items were read, as a decode job killed mid-set."""

        def __init__(self, fail_at):
            self.fail_at, self.shape, self.dtype, self.reads = fail_at, items.shape, items.dtype, []

        def __len__(self):
            return len(items)

        def __getitem__(self, key):
            self.reads.append(key.start)
            if key.stop > self.fail_at:
                raise KeyboardInterrupt
            return items[key]

    path = tmp_path / "d.npz"
    with pytest.raises(KeyboardInterrupt):
        save_data(path, {"x": Failing(35), "labels": np.arange(103)}, {"m": 1}, shard_size=10)
    assert not path.exists() and len(list(tmp_path.glob("d.x-*-of-*.npy"))) == 3
    again = Failing(10_000)
    save_data(path, {"x": again, "labels": np.arange(103)}, {"m": 1}, shard_size=10)
    assert again.reads == [30, 40, 50, 60, 70, 80, 90, 100]  # shards 0..2 were kept
    np.testing.assert_array_equal(np.asarray(load_data(path)["x"]), items)
    assert not list(tmp_path.glob("*progress*"))
    other = Failing(10_000)  # another config: nothing of the earlier run is trusted
    save_data(path, {"x": other, "labels": np.arange(103)}, {"m": 2}, shard_size=10)
    assert len(other.reads) == 11


def test_truncated_shard_is_named_even_without_digest_check(tmp_path, items):
    save_data(tmp_path / "d.npz", {"x": items, "labels": np.arange(103)}, {}, shard_size=50)
    shard = tmp_path / "d.x-00001-of-00003.npy"
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(InputError, match=r"d\.x-00001-of-00003\.npy: checksum mismatch"):
        load_data(tmp_path / "d.npz", verify=False)


def _epoch_of(batches, steps):
    return np.concatenate([batches.indices(s) for s in range(steps)])


def test_order_is_a_permutation_per_epoch_and_sliced_per_rank():
    n, batch = 50, 8
    one = StepBatches(np.arange(n), np.zeros(n, dtype=np.int64), None, batch, slice(0, batch), seed=3)
    visits = _epoch_of(one, 25)  # 200 positions = 4 epochs
    for epoch in range(4):
        assert sorted(visits[epoch * n:(epoch + 1) * n]) == list(range(n))
    assert not np.array_equal(visits[:n], visits[n:2 * n])
    ranks = [StepBatches(np.arange(n), np.zeros(n, dtype=np.int64), None, batch, slice(r * 4, r * 4 + 4), seed=3)
             for r in range(2)]
    for step in (0, 6, 19):
        joined = np.concatenate([r[step]["x"].numpy() for r in ranks])
        np.testing.assert_array_equal(joined, one[step]["x"].numpy())
    again = StepBatches(np.arange(n), np.zeros(n, dtype=np.int64), None, batch, slice(0, batch), seed=3)
    np.testing.assert_array_equal(_epoch_of(again, 25), visits)  # a pure function of (seed, step): resumable
    other = StepBatches(np.arange(n), np.zeros(n, dtype=np.int64), None, batch, slice(0, batch), seed=4)
    assert not np.array_equal(_epoch_of(other, 7), visits[:56])


def test_worker_processes_stream_the_same_batches_as_the_training_process(tmp_path, items):
    save_data(tmp_path / "d.npz", {"x": items, "labels": np.arange(103)}, {}, shard_size=10)
    data = load_data(tmp_path / "d.npz")
    tokens = np.arange(103 * 3).reshape(103, 3)
    batches = StepBatches(data["x"], data["labels"], tokens, 16, slice(0, 16), seed=0)
    inline = list(stream(batches, 4, 12))
    workers = list(stream(batches, 4, 12, workers=2, prefetch=2))
    assert len(inline) == len(workers) == 8
    for a, b, step in zip(inline, workers, range(4, 12), strict=True):
        index = batches.indices(step)
        for key, expected in (("x", items[index]), ("labels", index), ("tokens", tokens[index])):
            assert torch.equal(a[key], b[key]) and np.array_equal(a[key].numpy(), expected), key


def test_latent_strings_encoded_in_chunks_equal_one_call():
    from kaleido.latents import tokenizer as tok

    strings = ["red circle (1, 2, 3, 4)", "blue square (5, 6, 7, 8); green triangle (1, 1, 2, 2)", "x"] * 7
    tokenizer = tok.build("offline", strings, [])
    whole = tokenizer(strings, padding="longest", return_attention_mask=True)
    for chunk in (1, 4, 100):
        ids, mask = tok.encode(tokenizer, strings, chunk=chunk)
        np.testing.assert_array_equal(ids, np.asarray(whole["input_ids"]))
        np.testing.assert_array_equal(mask, np.asarray(whole["attention_mask"]))


def test_sharded_latents_are_extracted_in_parts_that_resume(tmp_path):
    """Per-item extractors run part by part over the data shards (here in 2 processes) with the strings of one call
    over the whole set; finished parts survive a rerun with the same provenance, and another provenance redoes
    them."""
    from kaleido.data import DATASETS
    from kaleido.latents import EXTRACTORS
    from kaleido.latents.images import ImageContext
    from kaleido.latents.stage import extract_in_parts, part_paths
    from metrics.io import save_npz_atomic

    data = DATASETS.get("shapes").generate({"name": "shapes", "num_train": 240, "image_size": 32}, seed=5)
    save_data(tmp_path / "d.npz", data, {}, shard_size=80)
    sharded = load_data(tmp_path / "d.npz")
    ctx = ImageContext(labels=sharded["labels"], class_names=list(sharded["class_names"]))
    bbox = EXTRACTORS.get("bbox")
    whole = bbox.extract_strings(data["x"], ctx, {}, 0)
    out = tmp_path / "bbox.npz"
    got = extract_in_parts(bbox, "bbox", sharded["x"], ctx, {}, 0, out, {"run": 1}, workers=2)
    np.testing.assert_array_equal(got.strings, whole.strings)
    assert got.names == whole.names
    paths = part_paths(out, 3)
    assert all(p.is_file() for p in paths)
    save_npz_atomic(paths[1], meta={"run": 1}, strings=np.array(["kept"] * 80), names=np.array(got.names),
                    added_tokens=np.array([], dtype=str))
    again = extract_in_parts(bbox, "bbox", sharded["x"], ctx, {}, 0, out, {"run": 1})
    assert list(again.strings[80:160]) == ["kept"] * 80 and list(again.strings[:80]) == list(whole.strings[:80])
    redone = extract_in_parts(bbox, "bbox", sharded["x"], ctx, {}, 0, out, {"run": 2})
    np.testing.assert_array_equal(redone.strings, whole.strings)


def test_a_shard_of_a_sharded_array_reads_its_items(tmp_path, items):
    save_data(tmp_path / "d.npz", {"x": items, "labels": np.arange(103)}, {}, shard_size=40)
    x = load_data(tmp_path / "d.npz")["x"]
    for k, (a, b) in enumerate([(0, 40), (40, 80), (80, 103)]):
        part = x.shard(k)
        assert part.shape == (b - a, 4, 5, 3) and part.reads_on_demand
        np.testing.assert_array_equal(part[3:7], items[a + 3:a + 7])
