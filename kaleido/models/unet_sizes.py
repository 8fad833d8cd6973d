"""The (Nested)UNet size registry and spec resolution, without torch: config validation reads them in every stage,
and a stage that never builds a network should not pay torch's import (~1.4 s, ~470 MiB RSS)."""

from __future__ import annotations

from typing import Any

# Size registry (like DiT's ``DiT_models``): name -> NestedUNet spec. ``levels`` lists one entry per nested
# resolution, outermost first. ``unet_*`` have a single resolution. ``mdm_in256`` has ml-mdm's ImageNet-256 shape
# (a 256 outer level wrapping a 64 inner UNet, attention only in the inner low-resolution levels) with widths chosen
# here to give the paper's ~500M parameters (508.9M at cond_dim 1024); it is not a copy of ml-mdm's config file.
# Parameter counts (cond_dim 64 unless noted): unet_tiny 0.76M, unet_small 18.05M, nested_tiny 0.94M,
# nested_small 31.74M, mdm_in256 508.86M (cond_dim 1024), mdm_in256_xs 133.30M (cond_dim 1024).
UNET_SIZES: dict[str, dict[str, Any]] = {
    "unet_tiny": {"levels": [{"channels": [32, 64], "num_res_blocks": 1, "attn_levels": [1]}],
                  "emb_dim": 64, "heads": 2},
    "unet_small": {"levels": [{"channels": [64, 128, 256], "num_res_blocks": 2, "attn_levels": [1, 2]}],
                   "emb_dim": 256, "heads": 4},
    "nested_tiny": {"levels": [{"channels": [16, 32], "num_res_blocks": 1, "attn_levels": []},
                               {"channels": [32, 64], "num_res_blocks": 1, "attn_levels": [1]}],
                    "emb_dim": 64, "heads": 2},
    "nested_small": {"levels": [{"channels": [32, 64, 128], "num_res_blocks": 1, "attn_levels": []},
                                {"channels": [128, 256, 256], "num_res_blocks": 2, "attn_levels": [1, 2]}],
                     "emb_dim": 256, "heads": 4},
    "mdm_in256": {"levels": [{"channels": [64, 128, 256], "num_res_blocks": 2, "attn_levels": []},
                             {"channels": [256, 512, 1024, 1024], "num_res_blocks": 2, "attn_levels": [2, 3]}],
                  "emb_dim": 1024, "heads": 8},
    # the autoguidance guide of mdm_in256 (Karras et al. 2024 guide EDM2-S with XS: the same network at half the
    # channels, ~1/4 of the parameters; mdm_in256 is EDM2-M-sized, so its XS halves its channels likewise)
    "mdm_in256_xs": {"levels": [{"channels": [32, 64, 128], "num_res_blocks": 2, "attn_levels": []},
                                {"channels": [128, 256, 512, 512], "num_res_blocks": 2, "attn_levels": [2, 3]}],
                     "emb_dim": 512, "heads": 8},
}


def resolve_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with its ``size`` preset (UNET_SIZES) filled in; keys of ``spec`` override the preset."""
    from kaleido.errors import ConfigError

    size = spec.get("size")
    if size is not None and size not in UNET_SIZES:
        raise ConfigError(f"unknown UNet size {size!r}; choose one of {sorted(UNET_SIZES)}")
    cfg = {**UNET_SIZES.get(size, {}), **{k: v for k, v in spec.items() if k != "size"}}
    if "levels" not in cfg:
        raise ConfigError(f"UNet spec needs 'size' (one of {sorted(UNET_SIZES)}) or 'levels'")
    return cfg


def level_resolutions(spec: dict[str, Any], resolution: int) -> list[int]:
    """Resolution of every nested level, outermost first (each level divides by 2**(levels-1))."""
    cfg = resolve_spec(spec)
    out = [resolution]
    for lvl in cfg["levels"][:-1]:
        out.append(out[-1] // 2 ** (len(lvl["channels"]) - 1))
    return out
