"""FID, KID, IS and P/R through our image feature path vs ``torch_fidelity.calculate_metrics`` on the same images.

Both sides load the same random-weight network files (torch-fidelity's own on-disk formats), so any difference
in preprocessing, feature layer, subset sampling or arithmetic shows up. Tolerance: 1e-4 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from img_nets import random_images, save_random_inception, save_random_vgg16

from metrics import keys
from metrics.features import FEATURE_NETS
from metrics.prdc import prdc
from metrics.suite import compute_all

RTOL = 1e-4
N = 20
KID_SUBSETS, KID_SUBSET_SIZE, IS_SPLITS = 10, 16, 4


class _Images(torch.utils.data.Dataset):
    """uint8 (3, H, W) tensors, what torch-fidelity reads from a Dataset input."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def _fidelity(fake: np.ndarray, real: np.ndarray, **kwargs: object) -> dict[str, float]:
    import torch_fidelity

    return torch_fidelity.calculate_metrics(input1=_Images(fake), input2=_Images(real), cuda=False, cache=False,
                                            verbose=False, batch_size=8, save_cpu_ram=True, **kwargs)


@pytest.fixture(scope="module")
def image_sets() -> tuple[np.ndarray, np.ndarray]:
    return random_images(N, seed=1), random_images(N, seed=2, shift=40)


@pytest.mark.slow  # Inception on 2 x N images, ours and torch-fidelity (~60 s)
def test_fid_kid_is_match_torch_fidelity(tmp_path_factory, image_sets) -> None:
    weights = save_random_inception(tmp_path_factory.mktemp("inception") / "inception.pth")
    real, fake = image_sets
    net = FEATURE_NETS.get("inception").with_options(weights=str(weights), batch_size=8, allow_unverified=True)
    real_out, fake_out = net.outputs(real), net.outputs(fake)
    assert real_out["features"].shape == (N, 2048) and fake_out["logits"].shape == (N, 1008)
    ours = compute_all(real_out["features"], fake_out["features"], logits_fake=fake_out["logits"],
                       is_splits=IS_SPLITS, kid_subsets=KID_SUBSETS, kid_subset_size=KID_SUBSET_SIZE)
    ref = _fidelity(fake, real, fid=True, kid=True, isc=True, feature_extractor="inception-v3-compat",
                    feature_extractor_weights_path=str(weights), kid_subsets=KID_SUBSETS,
                    kid_subset_size=KID_SUBSET_SIZE, isc_splits=IS_SPLITS)
    assert ours[keys.FD] == pytest.approx(ref["frechet_inception_distance"], rel=RTOL)
    assert ours[keys.KID] == pytest.approx(ref["kernel_inception_distance_mean"], rel=RTOL)
    assert ours[keys.KID_STD] == pytest.approx(ref["kernel_inception_distance_std"], rel=RTOL)
    assert ours[keys.INCEPTION_SCORE] == pytest.approx(ref["inception_score_mean"], rel=RTOL)
    assert ours[keys.INCEPTION_SCORE_STD] == pytest.approx(ref["inception_score_std"], rel=1e-3)
    assert ours[keys.FD] > 1e-3 and ours[keys.KID] > 1e-4  # the sets differ: a real comparison, not 0 == 0


@pytest.mark.slow  # VGG-16 on 2 x N images, ours and torch-fidelity (~25 s)
def test_precision_recall_match_torch_fidelity_prc(tmp_path_factory, image_sets) -> None:
    weights = save_random_vgg16(tmp_path_factory.mktemp("vgg") / "vgg16.pth")
    real, fake = image_sets[0][:10], image_sets[1][:10]
    net = FEATURE_NETS.get("vgg16").with_options(weights=str(weights), batch_size=6, allow_unverified=True)
    real_f, fake_f = net(real), net(fake)
    assert real_f.shape == (10, 4096)
    ours = prdc(real_f, fake_f, k_pr=3, k_dc=3)
    assert 0 < ours[keys.PRECISION] < 1  # not a trivial all-in or all-out comparison
    ref = _fidelity(fake, real, prc=True, feature_extractor="vgg16", feature_extractor_weights_path=str(weights),
                    prc_neighborhood=3)
    assert ours[keys.PRECISION] == pytest.approx(ref["precision"], rel=RTOL)
    assert ours[keys.RECALL] == pytest.approx(ref["recall"], rel=RTOL)
