"""Accuracy metrics of a susceptibility map against a reference, as the QSM challenges use them.

- ``nrmse``: demeaned normalised root-mean-square error in percent inside the mask,
  ``100 ||(x - mean x) - (r - mean r)|| / ||r - mean r||`` (2016 challenge, QSM-CI).
- ``xsim``: SSIM re-parametrised for QSM (Milovic et al., MRM 2024, QSM challenge 2.0):
  native ppm (no rescaling), dynamic range L = 1 ppm, K1 = 0.01, K2 = 0.001, 5 x 5 x 5
  box windows, both images zero outside the mask, the SSIM map averaged over the mask.
- ``hfen``: high-frequency error norm, the (non-demeaned) NRMSE in percent of the
  Laplacian-of-Gaussian (sigma 1.5 voxels) filtered images inside the mask.

Pure functions of arrays; the reference is the second argument everywhere.
"""

from __future__ import annotations

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
