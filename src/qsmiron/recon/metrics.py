"""Accuracy metrics of a susceptibility map against a reference, as the QSM challenges use them.

- ``nrmse``: demeaned normalised root-mean-square error in percent inside the mask,
  ``100 ||(x - mean x) - (r - mean r)|| / ||r - mean r||`` (2016 challenge, QSM-CI).
- ``xsim``: SSIM re-parametrised for QSM (Milovic et al., MRM 2024, QSM challenge 2.0):
  native ppm (no rescaling), dynamic range L = 1 ppm, K1 = 0.01, K2 = 0.001, 5 x 5 x 5
  box windows, both images zero outside the mask, the SSIM map averaged over the mask.
- ``hfen``: high-frequency error norm, the (non-demeaned) NRMSE in percent of the
  Laplacian-of-Gaussian (sigma 1.5 voxels) filtered images inside the mask.
- ``regional_agreement``: regional means (e.g. CIT168 nuclei) of map and reference, each
  referenced to its own whole-brain mean: mean absolute error and bias in ppb, and the
  slope of estimate against truth (issue 9's regional figures).

Pure functions of arrays; the reference is the second argument everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def _masked(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, np.asarray(x, dtype=np.float64), 0.0)


def nrmse(chi_ppm: np.ndarray, reference_ppm: np.ndarray, mask: np.ndarray) -> float:
    """Demeaned NRMSE (%) inside ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    x = np.asarray(chi_ppm, dtype=np.float64)[mask]
    r = np.asarray(reference_ppm, dtype=np.float64)[mask]
    x = x - x.mean()
    r = r - r.mean()
    return float(100.0 * np.linalg.norm(x - r) / np.linalg.norm(r))


def xsim(chi_ppm: np.ndarray, reference_ppm: np.ndarray, mask: np.ndarray, *,
         window: int = 5, k1: float = 0.01, k2: float = 0.001, dynamic_range: float = 1.0) -> float:
    """XSIM: structural similarity for QSM, mean of the SSIM map inside ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    x = _masked(chi_ppm, mask)
    r = _masked(reference_ppm, mask)
    c1 = (k1 * dynamic_range) ** 2
    c2 = (k2 * dynamic_range) ** 2
    mean = lambda a: ndimage.uniform_filter(a, size=window, mode="constant")  # noqa: E731
    mx, mr = mean(x), mean(r)
    vx = mean(x * x) - mx * mx
    vr = mean(r * r) - mr * mr
    cov = mean(x * r) - mx * mr
    ssim_map = ((2 * mx * mr + c1) * (2 * cov + c2)) / ((mx * mx + mr * mr + c1) * (vx + vr + c2))
    return float(ssim_map[mask].mean())


def hfen(chi_ppm: np.ndarray, reference_ppm: np.ndarray, mask: np.ndarray, *,
         sigma_voxels: float = 1.5) -> float:
    """HFEN (%): NRMSE of Laplacian-of-Gaussian filtered images inside ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    x = ndimage.gaussian_laplace(_masked(chi_ppm, mask), sigma_voxels)[mask]
    r = ndimage.gaussian_laplace(_masked(reference_ppm, mask), sigma_voxels)[mask]
    return float(100.0 * np.linalg.norm(x - r) / np.linalg.norm(r))


def all_metrics(chi_ppm: np.ndarray, reference_ppm: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """NRMSE, XSIM and HFEN in one dict."""
    return {"nrmse": nrmse(chi_ppm, reference_ppm, mask),
            "xsim": xsim(chi_ppm, reference_ppm, mask),
            "hfen": hfen(chi_ppm, reference_ppm, mask)}


@dataclass(frozen=True)
class RegionalAgreement:
    """Regional means of a map against the truth, both referenced to their mean over the mask.

    Attributes
    ----------
    labels : tuple of int
        The regions compared (those with at least ``min_voxels`` in the mask).
    estimate_ppb, truth_ppb : tuple of float
        Regional means, ppb, after subtracting each map's own mean over the mask.
    mean_abs_error_ppb : float
        Mean over regions of |estimate - truth|.
    bias_ppb : float
        Mean over regions of estimate - truth.
    slope : float
        Least-squares slope of the estimates against the truths (1 when contrast is kept).
    """

    labels: tuple[int, ...]
    estimate_ppb: tuple[float, ...]
    truth_ppb: tuple[float, ...]
    mean_abs_error_ppb: float
    bias_ppb: float
    slope: float

    def error_of(self, label: int) -> float:
        """Estimate minus truth (ppb) for one region."""
        i = self.labels.index(label)
        return self.estimate_ppb[i] - self.truth_ppb[i]


def regional_agreement(chi_ppm: np.ndarray, reference_ppm: np.ndarray, labels: np.ndarray,
                       mask: np.ndarray, *, min_voxels: int = 10, min_coverage: float = 0.0) -> RegionalAgreement:
    """Regional mean error (ppb) and slope over labelled regions, whole-brain-mean referenced.

    Each map is referenced to its own mean over ``mask`` (the consensus whole-brain
    reference), then averaged over each label's voxels inside ``mask``. A region enters with at
    least ``min_voxels`` voxels inside ``mask`` and at least ``min_coverage`` of its voxels there
    (``qsmiron roi`` flags a region below its ``min_coverage`` as measured on part of it,
    ``flag_partial_coverage``; 0 takes any part).
    """
    mask = np.asarray(mask, dtype=bool)
    labels = np.asarray(labels)
    x = np.asarray(chi_ppm, dtype=np.float64)
    r = np.asarray(reference_ppm, dtype=np.float64)
    x_mean, r_mean = x[mask].mean(), r[mask].mean()
    inside = labels[mask]
    xs, rs = x[mask] - x_mean, r[mask] - r_mean
    counts = np.bincount(inside.astype(np.int64).ravel())
    whole = np.bincount(labels.astype(np.int64).ravel(), minlength=counts.size)[:counts.size]
    covered = counts >= min_coverage * whole
    kept = [int(k) for k in np.flatnonzero((counts >= min_voxels) & covered) if k != 0]
    if not kept:
        raise ValueError("no labelled region has enough voxels inside the mask")
    est = np.array([1e3 * xs[inside == k].mean() for k in kept])
    tru = np.array([1e3 * rs[inside == k].mean() for k in kept])
    centred = tru - tru.mean()
    slope = float(np.dot(centred, est - est.mean()) / np.dot(centred, centred)) if np.any(centred) else float("nan")
    return RegionalAgreement(tuple(kept), tuple(float(v) for v in est), tuple(float(v) for v in tru),
                             float(np.mean(np.abs(est - tru))), float(np.mean(est - tru)), slope)
