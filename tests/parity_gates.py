"""The numerical gates of the parity tests, and the statistics they report.

The seeds' statistic (mean relative difference of features, ``mean_rel_diff``) is printed for
every comparison but gates nothing: it is dominated by the few feature values that lie near
zero, so it moves with a CPU's rounding — PyTorch's own float32 run of RN50 is 6e-6..9e-6 from
a float64 run in it, against a 1e-5 limit, and a correct port lands on either side of that limit
depending on the CPU's kernels.

What separates a correct port from a wrong one whatever the kernels:

- ``normwise`` distance of each tower's features from the **float64** run of OpenAI's code
  (``||ours - f64|| / ||f64||`` over the batch), against PyTorch's own float32 distance from the
  same float64 run, measured in the same reference process: a correct float32 port rounds about
  as much as PyTorch does (ratio ~1), so ours may be at most :data:`RATIO` times as far, with
  :data:`FLOOR` as the smallest allowance (a few float32 ulps);
- the largest absolute difference of the **normalised** features from PyTorch's float32 ones
  (what cosine similarities and zero-shot logits are made of), at most :data:`FEATURE_ATOL`;
- the largest absolute difference of the probabilities, at most :data:`PROB_ATOL`.

Measured on correct ports: normwise ratio 0.5-2, normalised features ~1e-7, probabilities ~1e-7.
Deliberately wrong variants (tests/test_parity_gates.py: a BatchNorm variance off by 1 %,
LayerNorm epsilon 1e-6, exact GELU instead of QuickGELU, a transposed projection) are 30x to
10^6x beyond these limits.
"""
import numpy as np

RATIO = 4.0
FLOOR = 2e-7
FEATURE_ATOL = 1e-5
PROB_ATOL = 1e-5

# float16 (OpenAI's GPU layout): both frameworks round differently at every step; PyTorch's own
# fp16 run differs from its fp32 run by about 7e-3 (features) and 5e-4 (probabilities).
FP16_TOLERANCE = (3e-2, 5e-3)


def mean_rel_diff(ref, ours):
    """The seeds' statistic: mean of |ref - ours| / (|ref| + 1e-6)."""
    return float(np.mean(np.abs(ref - ours) / (np.abs(ref) + 1e-6)))


def mean_abs_diff(ref, ours):
    return float(np.mean(np.abs(ref - ours)))


def normwise(ours, ref):
    """Relative distance over the whole batch: ||ours - ref|| / ||ref||."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


def _normalised(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def statistics(expected, image_features, text_features, probs):
    """Every statistic of one comparison with the reference outputs ``expected`` (the arrays of
    ``make_reference.py``: float32 outputs and their ``*_f64`` float64 counterparts)."""
    stats = {}
    for tower, ours in (("image", image_features), ("text", text_features)):
        ref32, ref64 = expected[f"{tower}_features"], expected[f"{tower}_features_f64"]
        torch_error = normwise(ref32, ref64)
        stats[f"{tower} mean rel diff (seeds)"] = mean_rel_diff(ref32, ours)
        stats[f"{tower} normwise vs f64"] = normwise(ours, ref64)
        stats[f"{tower} torch normwise vs f64"] = torch_error
        stats[f"{tower} ratio"] = normwise(ours, ref64) / max(torch_error, FLOOR)
        stats[f"{tower} max abs normalised"] = float(np.abs(_normalised(ours) - _normalised(ref32)).max())
    stats["probs max abs"] = float(np.abs(np.asarray(probs, np.float64) - expected["probs"]).max())
    stats["probs mean abs (seeds)"] = mean_abs_diff(expected["probs"], probs)
    return stats


def failures(stats):
    """The gates that ``stats`` fails, as readable strings (empty: every gate passes)."""
    failed = []
    for tower in ("image", "text"):
        if not stats[f"{tower} ratio"] <= RATIO:
            failed.append(f"{tower} features: {stats[f'{tower} normwise vs f64']:.2e} from float64, "
                          f"{stats[f'{tower} ratio']:.1f}x PyTorch's float32 error (limit {RATIO}x)")
        if not stats[f"{tower} max abs normalised"] <= FEATURE_ATOL:
            failed.append(f"{tower} normalised features differ by {stats[f'{tower} max abs normalised']:.2e} "
                          f"(limit {FEATURE_ATOL})")
    if not stats["probs max abs"] <= PROB_ATOL:
        failed.append(f"probabilities differ by {stats['probs max abs']:.2e} (limit {PROB_ATOL})")
    return failed


def summary(stats):
    keys = ("image mean rel diff (seeds)", "text mean rel diff (seeds)", "probs mean abs (seeds)",
            "image ratio", "text ratio", "image max abs normalised", "text max abs normalised", "probs max abs")
    return ", ".join(f"{k} {stats[k]:.2e}" for k in keys)
