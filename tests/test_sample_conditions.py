"""``sample_conditions``: the samples cycle through the first N conditions (a captioned set's K captions x M)."""

from __future__ import annotations

import pytest

from kaleido import config
from kaleido.errors import ConfigError
from kaleido.generation import sample_conditions


def test_count_and_refusal() -> None:
    assert sample_conditions({}, 10) == 10 and sample_conditions({"sample_conditions": 0}, 10) == 10
    assert sample_conditions({"sample_conditions": 4}, 10) == 4
    with pytest.raises(ConfigError, match=r"sample_conditions: 11, .* 10 conditions .* at most 10"):
        sample_conditions({"sample_conditions": 11}, 10)


def test_in_the_sample_slice_only_when_set(default_config) -> None:
    """Configs without the key keep their sample slices (no rerun of finished samples); setting it reruns them."""
    keys = {"method": "mdm", "latent": "none", "guidance": "8"}
    before = config.stage_spec(default_config, "toy2d", "sample", **keys)
    assert "sample_conditions" not in before
    default_config["experiments"]["toy2d"]["sample_conditions"] = 2
    after = config.stage_spec(default_config, "toy2d", "sample", **keys)
    assert after == {**before, "sample_conditions": 2}
