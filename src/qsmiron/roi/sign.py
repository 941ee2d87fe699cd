"""Does the map have the right sign? The iron-rich nuclei are the adult brain's most paramagnetic tissue.

A phase stored with the opposite sign convention (some exports, converters and reconstruction
settings do) inverts every susceptibility: iron reads as negative, and nothing in the
reconstruction can tell. Anatomy can: in adults the globus pallidus (about +0.14 ppm against the
whole brain), the substantia nigra (+0.13) and the red nucleus (+0.10) lie several
between-subject SDs (0.025-0.03 ppm) above zero (literature values of
``qsmiron.simulate.settings``). Their volume-weighted mean, referenced to the whole brain, must
therefore be positive; a negative mean is what an inverted phase gives (about -0.1 ppm), and the
subject is reported with the setting that reverses it (``recon.phase.rescale.negate``). Zero
is the threshold: four SDs from either sign. Children under about two years, whose nuclei hold
little iron yet, are not what the check was made for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qsmiron.records.regions import SignCheckInfo

IRON_RICH_REGIONS = ("GPe", "GPi", "SNr", "RN")
"""CIT168 names of the nuclei whose susceptibility is positive in every adult."""
NEGATE_SETTING = "recon.phase.rescale.negate"
MIN_MEAN_PPM = 0.0
"""The nuclei's mean must lie above this: four between-subject SDs from the adult mean of either sign."""


def iron_sign_check(table: pd.DataFrame, *,
                    min_mean_ppm: float = MIN_MEAN_PPM) -> tuple[SignCheckInfo, str | None]:
    """Check that the iron-rich nuclei of one subject's regional table read positive.

    Parameters
    ----------
    table : DataFrame
        The subject's regional table (``qsmiron.roi.measure.TABLE_COLUMNS``).
    min_mean_ppm : float
        Their voxel-weighted mean chi (whole-brain reference) must exceed this.

    Returns
    -------
    SignCheckInfo
        The regions used, their mean (ppm) and the threshold; or why the check did not run
        (an atlas without those regions, no whole-brain reference, none measured).
    str or None
        A warning naming the setting that reverses the phase, when the mean is not above the threshold.
    """
    rows = table[(table["measure"] == "chi") & (table["reference"] == "whole_brain")
                 & table["region"].isin(IRON_RICH_REGIONS) & (table["n_voxels"] > 0)]
    for flag in ("flag_small", "flag_partial_coverage"):
        if flag in rows.columns:
            rows = rows[~rows[flag].astype(bool)]
    rows = rows[np.isfinite(rows["mean"].astype(float))]
    if rows.empty:
        return SignCheckInfo(checked=False, reason=f"no measured {', '.join(IRON_RICH_REGIONS)} with the "
                                                   "whole-brain reference (another atlas or reference)"), None
    mean = float(np.average(rows["mean"].astype(float), weights=rows["n_voxels"].astype(float)))
    info = SignCheckInfo(checked=True, regions=sorted(set(rows["region"])), mean_ppm=round(mean, 4),
                         min_mean_ppm=min_mean_ppm)
    if not info.reversed:
        return info, None
    return info, (f"the iron-rich nuclei ({', '.join(info.regions)}) read {mean:+.3f} ppm against the whole "
                  f"brain; in adults they are its most paramagnetic tissue (+0.10 to +0.14 ppm): is the phase "
                  f"stored with the opposite sign? If so, set {NEGATE_SETTING} = true and reconstruct again")
