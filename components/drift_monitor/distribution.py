"""Per-feature distribution tests of the recent sample against the reference sample.

For every feature (standardized with the training statistics): the two-sample
Kolmogorov-Smirnov test, or Pearson's chi-squared test on the value counts when the reference
holds at most :data:`CATEGORICAL_VALUES` distinct values (a categorical column); the
population stability index over the reference's deciles; the Wasserstein distance (in training
standard deviations) and the ratio of standard deviations. With the model in the loop the
predicted class counts get a chi-squared test too.

A feature counts as drifted when its p-value is below ``alpha`` divided by the number of
features (Bonferroni) and its PSI is at least :data:`PSI_DRIFT` (a moderate shift, by the usual
rule of thumb). The p-values assume independent rows; sensor streams are autocorrelated, so
these tests describe the shift while the calibrated ADWIN detectors raise the alarms.
"""

from __future__ import annotations

import numpy as np

CATEGORICAL_VALUES = 10
PSI_DRIFT = 0.1
BINS = 20
MIN_ROWS = 50


def _psi(reference: np.ndarray, recent: np.ndarray) -> float:
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)[1:-1]))
    ref = np.bincount(np.searchsorted(edges, reference), minlength=len(edges) + 1)
    cur = np.bincount(np.searchsorted(edges, recent), minlength=len(edges) + 1)
    ref = np.maximum(ref / ref.sum(), 1e-4)
    cur = np.maximum(cur / cur.sum(), 1e-4)
    return float(((cur - ref) * np.log(cur / ref)).sum())


def _chi2(reference: np.ndarray, recent: np.ndarray) -> tuple[float, float]:
    from scipy.stats import chi2_contingency

    values = np.union1d(reference, recent)
    table = np.stack(
        [[(reference == v).sum() for v in values], [(recent == v).sum() for v in values]]
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def _histogram(reference: np.ndarray, recent: np.ndarray) -> dict:
    low = float(min(reference.min(), recent.min()))
    high = float(max(reference.max(), recent.max()))
    edges = np.linspace(low, high if high > low else low + 1.0, BINS + 1)
    return {
        "edges": edges.round(6).tolist(),
        "reference": np.histogram(reference, edges)[0].tolist(),
        "recent": np.histogram(recent, edges)[0].tolist(),
    }


def compare_feature(reference: np.ndarray, recent: np.ndarray) -> dict:
    """Returns the tests of one feature's recent values against its reference values."""
    from scipy.stats import ks_2samp, wasserstein_distance

    categorical = len(np.unique(reference)) <= CATEGORICAL_VALUES
    if categorical:
        statistic, pvalue = _chi2(reference, recent)
    else:
        result = ks_2samp(reference, recent)
        statistic, pvalue = float(result.statistic), float(result.pvalue)
    ref_std = float(reference.std())
    return {
        "test": "chi2" if categorical else "ks",
        "statistic": statistic,
        "pvalue": pvalue,
        "psi": _psi(reference, recent),
        "wasserstein": float(wasserstein_distance(reference, recent)),
        "mean_shift": float(recent.mean() - reference.mean()),
        "std_ratio": float(recent.std() / ref_std) if ref_std > 0 else None,
        "histogram": _histogram(reference, recent),
    }


def compare_samples(
    reference: np.ndarray, recent: np.ndarray, feature_columns: list, classes: list, alpha=0.01
) -> dict:
    """Compares the recent sample with the reference, feature by feature.

    Args:
        reference: Reference rows (standardized features, then class probabilities if any).
        recent: Recent rows in the same layout.
        feature_columns: The feature names (the first columns).
        classes: Class names (the remaining columns hold their probabilities), or empty.
        alpha: Family-wise significance level over the features.

    Returns:
        ``{"rows": {"reference", "recent"}, "features": {name: tests + drifted},
        "drifted_features", "drifted_share", "predictions"}``; empty tests while either
        sample has fewer than :data:`MIN_ROWS` rows.
    """
    result = {"rows": {"reference": len(reference), "recent": len(recent)}, "features": {}}
    result.update(drifted_features=[], drifted_share=None, predictions=None)
    if min(len(reference), len(recent)) < MIN_ROWS:
        return result
    level = alpha / max(len(feature_columns), 1)
    for k, name in enumerate(feature_columns):
        tests = compare_feature(reference[:, k], recent[:, k])
        tests["drifted"] = tests["pvalue"] < level and tests["psi"] >= PSI_DRIFT
        result["features"][name] = tests
    result["drifted_features"] = [n for n, t in result["features"].items() if t["drifted"]]
    result["drifted_share"] = len(result["drifted_features"]) / max(len(feature_columns), 1)
    if classes and reference.shape[1] > len(feature_columns):
        n = len(feature_columns)
        ref_top, cur_top = reference[:, n:].argmax(axis=1), recent[:, n:].argmax(axis=1)
        statistic, pvalue = _chi2(ref_top, cur_top)
        result["predictions"] = {
            "test": "chi2",
            "statistic": statistic,
            "pvalue": pvalue,
            "reference_shares": _shares(ref_top, len(classes), classes),
            "recent_shares": _shares(cur_top, len(classes), classes),
            "reference_confidence": float(reference[:, n:].max(axis=1).mean()),
            "recent_confidence": float(recent[:, n:].max(axis=1).mean()),
        }
    return result


def _shares(top: np.ndarray, k: int, classes: list) -> dict:
    counts = np.bincount(top, minlength=k) / len(top)
    return {str(c): float(v) for c, v in zip(classes, counts, strict=True)}
