"""Phase unwrapping methods, declared once in ``METHODS``.

Every method takes the 4D wrapped phase (echoes last, rad), the magnitude, the mask, the
voxel size and the echo times, and returns a ``RomeoResult`` (unwrapped phase, rad, 0 outside
the mask; the echo-independent phase offset; an edge quality map or None):

- ``romeo``: exact quality-guided region growing, consistent across echoes, with MCPC-3D-S
  phase-offset removal (the default; the consensus recommendation).
- ``laplacian``: FFT Laplacian unwrapping, fast, alters the field near strong sources.
"""

from __future__ import annotations

from qsmiron.methods import Method
from qsmiron.recon.unwrap._common import as_4d, smooth_phase_linear
from qsmiron.recon.unwrap.laplacian import unwrap_laplacian, unwrap_laplacian_full
from qsmiron.recon.unwrap.romeo import RomeoResult, mcpc3ds_offset, unwrap_romeo, unwrap_romeo_full

METHODS = (
    Method("romeo", unwrap_romeo_full, label="ROMEO (quality-guided region growing)",
           description="exact quality-guided region growing of the first echo, the others "
                       "unwrapped in time against it, after MCPC-3D-S offset removal",
           citation="Dymerska B, Eckstein K, Bachrata B, et al. Magn Reson Med 2021;85:2294-2308",
           doi="10.1002/mrm.28563"),
    Method("laplacian", unwrap_laplacian_full, label="Laplacian unwrapping",
           description="FFT Laplacian unwrapping of each echo after MCPC-3D-S offset removal "
                       "(fast; alters the field near strong sources)",
           citation="Schofield MA, Zhu Y. Opt Lett 2003;28:1194-1196", doi="10.1364/OL.28.001194"),
)
"""Unwrapping methods (stage ``unwrap``)."""

DEFAULT_UNWRAPPER = "romeo"

__all__ = ["METHODS", "DEFAULT_UNWRAPPER", "as_4d", "smooth_phase_linear", "unwrap_romeo", "unwrap_romeo_full",
           "unwrap_laplacian", "unwrap_laplacian_full", "mcpc3ds_offset", "RomeoResult"]
