"""Resume: what decides that a subject's outputs can be reused, and the done-marker that says so.

A subject's outputs are written file by file atomically into its folder, and a done-marker
(``qsmiron.records.DoneMarker``, file ``DONE_MARKER``) is written last, atomically, holding
the hash of the inputs, the hash of the settings that change results and the size of every
output. A later run skips a subject whose marker matches; a subject about to run first loses
its marker, so a run killed at any moment never leaves a folder that is taken as done.
"""

from __future__ import annotations

import hashlib
import os
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from qsmiron.config import QsmironConfig
from qsmiron.errors import InputError
from qsmiron.io.atomic import write_json_atomic
from qsmiron.io.bids import SubjectInputs
from qsmiron.io.derivatives import DONE_MARKER
from qsmiron.records.cohort import DoneMarker, MarkerFile


RESULTS_REVISION = 15
"""Revision of what a subject's outputs hold, for the same version and settings. The version
string changes only at a release; between releases a change to a method's results or to the
files written (a default rule, a sidecar key) bumps this, so that resuming a cohort re-runs
its subjects instead of mixing results of two revisions. 1: before the counter; 2:
``wtv_bregman`` interpolates the level's crossing (``qsmiron.recon.invert.bregman``); 3: a
given measurement mask without R2* grows back to the magnitude's brain for registration
(``qsmiron.roi.subject.subject_brain_mask``); 4: the regions tables gain the interior-weighted
median, which the statistics analyse by default (``qsmiron.roi.measure``); 5: the inversion
weighs the field by the echo fit's local misfit (``qsmiron.recon.echofit.local_misfit_factor``);
6: the inversion takes its edges from the last echo's magnitude (``ReconState.edge_magnitude``);
7: without R2* the registration's brain is the total field's support (``roi.subject.subject_brain_mask``),
and a registration is flagged by its residual misalignment, not its NMI (``roi.qc.registration_metrics``);
8: the readout check (``recon.bipolar``), the sign check (``roi.sign``) and the residual misalignment
measured in the SyN domain (``roi.subject.shift_region``); 9: a misfit voxel also needs a field error
above ``misfit_tolerance_ppm``, voxels off by an aliasing period lose their field, and so do
dephased voxels of two-echo scans (``recon.echofit``, ``recon.aliasing``, ``recon.dephasing``); 10: the
automatic mask's refinement removes the voxels centred within 1 mm of its surface (``recon.mask``); 11:
``wtv_bregman`` stops at the cone level less the mask's truncation leak, and raises a weight whose first
solve already reaches it (``recon.invert.bregman``); 12: the cone band of the inconsistency level is set
in cycles per mm, not per voxel (``recon.invert._common.CONE_MIN_FREQUENCY_PER_MM``), and ``wtv`` and ``tv``
take their automatic weight at that level less the mask's truncation leak (``recon.invert.tv_admm``); 13:
``wtv_bregman``'s magnitude edges exempt only the gradient components across them, MEDI's gradient mask
(``recon.invert.wtv.EdgeMask``); 14: so do chi-separation's (``recon.chisep.separation``; the susceptibility
map and every other output are those of 13); 15: the dipole kernel is even in k on the Nyquist planes
with an oblique B0 (``recon.dipole.dipole_kernel``) and the inconsistency level is a mean over the full
spectrum (``recon.invert._common.inconsistency_ppm``): a scan stored with its axes in another order gives
the same map."""


def result_settings(config: QsmironConfig) -> dict[str, Any]:
    """The settings that can change a subject's results, as JSON values.

    Every block but ``pipeline`` (processes, resume, progress), of which only
    ``reproducible_registration`` counts; of each reconstruction stage only the chosen method's
    parameters (the others do not run).
    """
    payload = config.model_dump(mode="json")
    pipeline = payload.pop("pipeline", {})
    payload["_reproducible_registration"] = pipeline["reproducible_registration"]
    for name, block in payload["recon"].items():
        payload["recon"][name] = {"method": block["method"], block["method"]: block.get(block["method"], {})}
    return payload


def config_hash(config: QsmironConfig, steps: Sequence[tuple[str, Callable]] = ()) -> str:
    """SHA-256 of every setting that changes a subject's results, of the steps run, the version
    and the results revision."""
    from qsmiron import __version__

    payload = result_settings(config)
    payload["_steps"] = [f"{name}:{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}"
                         for name, fn in steps]
    payload["_qsmiron_version"] = __version__
    payload["_results_revision"] = RESULTS_REVISION
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inputs_hash(unit: SubjectInputs, method: str = "stat") -> str:
    """SHA-256 over the subject's input files (images and sidecars).

    ``stat``: absolute path, size and modification time of each file; ``content``: the
    files' bytes (and names), so a copied dataset is recognised as unchanged.
    """
    digest = hashlib.sha256()
    for path in unit.input_files():
        path = Path(path)
        if method == "content":
            digest.update(f"{path.name}\0{file_digest(path)}\n".encode())
        else:
            stat = path.stat()
            digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def marker_path(out_dir: Path) -> Path:
    return Path(out_dir) / DONE_MARKER


def read_marker(out_dir: Path) -> DoneMarker | None:
    """The subject's done-marker, or None when there is none (or it is unreadable)."""
    path = marker_path(out_dir)
    if not path.is_file():
        return None
    try:
        return DoneMarker.read(path)
    except InputError:
        return None


def marker_is_valid(out_dir: Path, inputs_digest: str, config_digest: str) -> bool:
    """True when the subject's outputs are complete and were made from these inputs and settings."""
    marker = read_marker(out_dir)
    if marker is None or marker.inputs_hash != inputs_digest or marker.config_hash != config_digest:
        return False
    if not marker.outputs:
        return False
    for item in marker.outputs.values():
        path = Path(out_dir) / item.file
        if not path.is_file() or path.stat().st_size != item.size:
            return False
    return True


def write_marker(out_dir: Path, unit: SubjectInputs, outputs: Mapping[str, str | Path],
                 step_seconds: Mapping[str, float], inputs_digest: str, config_digest: str, *,
                 within: Path | None = None) -> None:
    """Write the done-marker (last, atomically) listing the outputs inside ``within`` (default the
    subject's folder ``out_dir``; a cohort gives the participant's folder, whose ``figures/``
    holds the QC images), each by its path relative to ``out_dir``."""
    files = {}
    within = Path(out_dir if within is None else within)
    for role, value in outputs.items():
        path = Path(value)
        try:
            path.relative_to(within)
        except ValueError:
            continue  # a file outside the subject folder is not the subject's output
        files[role] = MarkerFile(file=os.path.relpath(path, out_dir), size=path.stat().st_size)
    marker = DoneMarker(participant_id=unit.participant_id, session=unit.session, inputs_hash=inputs_digest,
                        config_hash=config_digest, outputs=files,
                        step_seconds={k: round(v, 3) for k, v in step_seconds.items()})
    write_json_atomic(marker_path(out_dir), marker.to_json())


def clear_for_rerun(out_dir: Path) -> None:
    """Remove the marker and leftovers of an interrupted run (temporary files and folders)."""
    marker = marker_path(out_dir)
    if marker.exists():
        marker.unlink()
    if not out_dir.is_dir():
        return
    for entry in out_dir.iterdir():
        if entry.name.startswith(".") and ".tmp" in entry.name:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
