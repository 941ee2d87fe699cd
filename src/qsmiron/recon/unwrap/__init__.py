"""Phase unwrapping methods, registered by name.

Every method takes the 4D wrapped phase (echoes last, rad) and returns the unwrapped phase of
the same shape (rad, 0 outside the mask):

- ``romeo``: exact quality-guided region growing, consistent across echoes, with MCPC-3D-S
  phase-offset removal (the default; the consensus recommendation).
- ``laplacian``: FFT Laplacian unwrapping, fast, alters the field near strong sources.
"""

from __future__ import annotations

from qsmiron.recon.unwrap.laplacian import unwrap_laplacian
from qsmiron.recon.unwrap.romeo import RomeoResult, mcpc3ds_offset, unwrap_romeo, unwrap_romeo_full

UNWRAPPERS = {
    "romeo": unwrap_romeo,
    "laplacian": unwrap_laplacian,
}
"""Name -> unwrapping function (the CLI, the configuration and the report list these)."""

DEFAULT_UNWRAPPER = "romeo"

__all__ = ["UNWRAPPERS", "DEFAULT_UNWRAPPER", "unwrap_romeo", "unwrap_romeo_full",
           "unwrap_laplacian", "mcpc3ds_offset", "RomeoResult"]
