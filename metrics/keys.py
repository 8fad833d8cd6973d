"""Result-key constants: every metric number the package returns is stored under one of these names.

Downstream code (CLI JSON, MLflow logging, report tables) must use these constants, never string literals,
so that a renamed key fails loudly at import time instead of silently producing an empty column. What each key
means for the tables (direction, title) is declared by its metric's entry in :mod:`metrics.metric_registry`.
"""

from __future__ import annotations

# Set-to-set metrics (real vs. generated features).
FD = "fd"  # Fréchet distance between Gaussian fits (FID when the features are Inception-v3 pool3).
PRECISION = "precision"  # Kynkäänniemi et al. 2019, fraction of fake points inside the real k-NN manifold.
RECALL = "recall"  # Kynkäänniemi et al. 2019, fraction of real points inside the fake k-NN manifold.
DENSITY = "density"  # Naeem et al. 2020, mean number of real k-NN balls holding a fake point, divided by k.
COVERAGE = "coverage"  # Naeem et al. 2020, fraction of real k-NN balls holding at least one fake point.
KID = "kid"  # Bińkowski et al. 2018 as torch-fidelity: mean over subsets of the unbiased poly-kernel MMD^2.
KID_STD = "kid_std"  # population std of the per-subset KID values (not a confidence interval).

# Generated set alone, from classifier logits (Inception-v3 ``logits_unbiased``).
INCEPTION_SCORE = "inception_score"  # Salimans et al. 2016 as torch-fidelity: mean over splits.
INCEPTION_SCORE_STD = "inception_score_std"  # population std over the splits.

# Diversity of the generated set alone.
VENDI = "vendi"  # Friedman & Dieng 2022, over the whole generated set.
VENDI_PER_CONDITION = "vendi_per_condition"  # mean over conditions of the per-condition Vendi score.
MSS = "mss"  # CADS/Kaleido mean similarity score: mean over conditions of the mean cosine similarity (lower = diverse).

# Toy (2-D mixture) metrics.
MODES_COVERED = "modes_covered"  # number of true modes receiving >= min_share of their own class's samples.
MODE_ENTROPY = "mode_entropy"  # mean over classes of the entropy (nats) of a class's samples over its own modes.

# Shapes-image metrics, read off the pixels by the offline object finder (kaleido.data.shapes_modes).
CLASS_ACCURACY = "class_accuracy"  # share of images whose main object (shape/colour) or object count is the class.
COLOR_ENTROPY = "color_entropy"  # mean over classes of the entropy (nats) of the main object's colour.
COLORS_PER_CLASS = "colors_per_class"  # mean over classes of the number of distinct main-object colours.
COUNT_ENTROPY = "count_entropy"  # mean over classes of the entropy (nats) of the object count.
NO_OBJECT_SHARE = "no_object_share"  # share of images in which no object is found.

# Kaleido with a latent grammar (bbox / blob): share of the prior's latent strings that end and parse.
LATENT_WELL_FORMED = "latent_well_formed"

# Settings recorded next to the numbers (CLI output).
K_PR = "k_pr"
K_DC = "k_dc"
VENDI_Q = "vendi_q"
NUM_REAL = "num_real"
NUM_FAKE = "num_fake"
FEATURE_DIM = "feature_dim"
KID_SUBSETS = "kid_subsets"
KID_SUBSET_SIZE = "kid_subset_size"
MSS_INCLUDE_DIAGONAL = "mss_include_diagonal"
BOOTSTRAP_RESAMPLES = "bootstrap_resamples"
PRDC_REFERENCE_SEED = "prdc_reference_seed"  # seed of a P/R/D/C reference subset (prdc_reference = N)
PRDC_NUM_REFERENCE = "prdc_num_reference"  # reference rows P/R/D/C used (all of them for prdc_reference "full")

#: distance-filter precisions of the exact k-NN (metrics.knn_kernels; "auto": TF32 on CUDA tensor cores, else
#: float32). A setting of speed only: every precision gives the same numbers.
KNN_PRECISIONS: tuple[str, ...] = ("auto", "float64", "float32", "tf32")

#: top-level key of the metric JSON holding {metric key: [low, high]} percentile-bootstrap 95% intervals
CI95 = "ci95"

SET_METRIC_KEYS: tuple[str, ...] = (FD, PRECISION, RECALL, DENSITY, COVERAGE, VENDI)
"""Built-in keys :func:`metrics.suite.compute_all` returns for any two feature sets. Which keys a metric returns,
and which are spreads (never bootstrapped) or also computed per extra feature network, is declared by its entry in
:mod:`metrics.metric_registry` (``always_keys``, ``spread_keys``, ``per_net_keys``: plugins included)."""
