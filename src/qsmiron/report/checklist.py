"""The QSM consensus reporting checklist (Magn Reson Med 2024;91:1834, doi:10.1002/mrm.30006),
item by item: where the methods text states it, or that the records do not hold it.

Each item is judged from the typed records (``Provenance``) and the study results, never
assumed: an item the records lack is shown as "not recorded", so a reader knows what to add
by hand before publishing.
"""

from __future__ import annotations

from typing import Any

from qsmiron.records.cohort import Provenance


def _any(values) -> bool:
    return any(v not in (None, "", [], ()) for v in values)


def checklist_rows(provenance: Provenance | None, results: Any = None) -> list[tuple[str, str, str]]:
    """(item, status, where) rows: status ``stated`` or ``not recorded``."""
    provenance = provenance or Provenance()
    acquisitions = [r.acquisition for r in provenance.recon_records]
    recons, regions = provenance.recon_records, provenance.regions_records

    def row(item: str, ok: bool, where: str) -> tuple[str, str, str]:
        return item, "stated" if ok else "not recorded", where if ok else "add by hand"

    versions = _any(r.versions for r in recons) or bool(getattr(results, "versions", None))
    return [
        row("Field strength", _any(a.field_strength_t for a in acquisitions), "acquisition paragraph"),
        row("Vendor and model", _any(a.manufacturer for a in acquisitions)
            and _any(a.manufacturers_model_name for a in acquisitions), "acquisition paragraph"),
        row("Scanner software version", _any(a.software_versions for a in acquisitions), "acquisition paragraph"),
        row("Receive coil", _any(a.receive_coil for a in acquisitions), "acquisition paragraph"),
        row("Echoes: number, first TE, spacing, last TE", _any(a.echo_times_s for a in acquisitions),
            "acquisition paragraph"),
        row("TR and flip angle", _any(a.repetition_time_s for a in acquisitions)
            and _any(a.flip_angle_deg for a in acquisitions), "acquisition paragraph"),
        row("Matrix and voxel size", _any(a.voxel_size_mm for a in acquisitions), "acquisition paragraph"),
        row("Parallel imaging and partial Fourier", _any(a.parallel_reduction_factor_in_plane for a in acquisitions)
            or _any(a.partial_fourier for a in acquisitions), "acquisition paragraph"),
        row("Every processing step with algorithm and parameters", bool(recons) and all(r.steps for r in recons),
            "reconstruction paragraph"),
        row("Units and reference region", bool(recons) and any(r.step("reference") for r in recons),
            "reconstruction paragraph"),
        row("Registration, template and atlas", bool(regions), "registration paragraph"),
        row("Quality control and exclusions", provenance.pipeline is not None or bool(getattr(results, "exclusions", None)),
            "quality-control paragraph"),
        row("Software and versions", versions, "software sentence"),
    ]
