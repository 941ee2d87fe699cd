"""The template's brain brought onto a subject's grid by a fast affine registration.

A magnitude threshold keeps everything bright: on a whole-head scan that includes the skull
base, the sinus walls, the face and the neck, where the phase is dominated by air and bone and
the inversion streaks. The MNI152NLin2009cAsym brain (the brain-extracted template's support)
registered to the subject marks where the brain is; ``qsmiron.recon.mask`` intersects the
magnitude mask with it. A mask needs no fine alignment: the subject's first-echo magnitude is
averaged into 4 mm blocks, masked by Otsu's threshold, N4 bias-corrected and registered affine
(Mattes mutual information evaluated inside the template brain grown by 8 mm, see
``affine_to_template``); the template brain is then resampled onto the subject's own grid
(the head's box) with linear interpolation (a probability-like fraction in [0, 1]).

The step is skipped, with the reason, when it cannot work: no template or ANTs installed, a
field of view too small to hold a brain (a crop or slab: affine registration of a partial
brain to a whole one is not reliable), or a registration whose brain does not lie inside the
subject's head.
"""

from __future__ import annotations

import functools
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

MASK_REGISTRATION_MM = 4.0
"""Grid of the affine registration for the mask (a mask tolerates millimetres)."""
MIN_EXTENT_MM = 100.0
"""Smallest extent of the head (magnitude above Otsu's threshold) along every axis for the
template step: an adult brain is about 140 x 170 x 120 mm; slabs and crops are skipped."""
BIAS_GRID_MM = 9.0
"""N4 estimates the bias field on the registration grid shrunk to about this spacing (whole
factors). On the real 3 mm Philips scan 9 mm instead of 6 mm took N4 from 3.6 to 1.3 s CPU with
the registered brain within the spread between runs (1.41-1.43 L; Dice 0.995 with a reference
run); 12 mm lost 2 % of the brain of one simulated head of ten. 1 mm data (4 mm blocks) shrink
by 2 either way."""
SCALP_SKULL_MM = 8.0
"""Scalp and skull together are at least this thick: the brain never lies in the head's outer rim."""
MASK_REGISTRATION_SEED = 1
"""Seed of the affine's metric sampling (repeating a run needs it and one ITK thread too:
``qsmiron.register.ants_backend.pin_itk_to_one_thread``)."""
TEMPLATE_GRID_MARGIN_MM = 20.0
"""Room around the template's brain on the registration's fixed grid (``register.normalise.
template_grid``); the metric's mask, the brain grown by 8 mm, lies well inside it."""
MIN_INSIDE_HEAD = 0.9
"""Share of the registered template brain that must lie inside the subject's head (magnitude
threshold dilated by 4 mm), else the registration is judged failed."""


@dataclass
class TemplateBrain:
    """The registered template brain on the subject's grid, or why there is none.

    Attributes
    ----------
    probability : ndarray of float32 or None
        Fraction of each subject voxel inside the template brain (0..1); None when skipped.
    info : dict
        ``used`` (bool), ``reason`` when skipped, ``seconds`` and ``cpu_seconds``, the
        registration's grid, and checks (head extent in mm, share of the template brain inside
        the head).
    """

    probability: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)



def start_importing_ants() -> threading.Thread:
    """Import ANTs in a background thread; the template registration later finds it loaded.

    ``import ants`` takes 2.5 to 4 s (its package pulls in pandas, statsmodels, matplotlib and
    scikit-learn), most of a single reconstruction's mask step. Started before the inputs are
    read, it overlaps that reading (decompression and the numba cast run without the GIL): on
    head_obl15 reading and importing took 4.4 to 5.1 s one after the other and 3.5 to 3.6 s
    together. A failure is left to the real import, which reports it.
    """
    def load() -> None:
        try:
            import ants  # noqa: F401

            prepared_template()
        except Exception:  # noqa: BLE001 - the registration's own calls report it
            pass

    thread = threading.Thread(target=load, name="import-ants", daemon=True)
    thread.start()
    return thread

def _elapsed(started: tuple[float, float]) -> dict[str, float]:
    """Wall and process CPU seconds since ``started`` = (perf_counter, process_time)."""
    return {"seconds": round(time.perf_counter() - started[0], 3),
            "cpu_seconds": round(time.process_time() - started[1], 3)}


def _skip(reason: str, started: tuple[float, float], **extra) -> TemplateBrain:
    return TemplateBrain(None, {"used": False, "reason": reason, **_elapsed(started), **extra})


def head_extent_mm(image: np.ndarray, voxel_size_mm) -> list[float]:
    """Extent (mm) of the head along each voxel axis: voxels above Otsu's threshold, between the
    0.5th and 99.5th percentiles of their positions (stray noise voxels do not count)."""
    from skimage.filters import threshold_otsu

    flat = image.reshape(-1)
    sample = flat[:: max(1, flat.size // 1_000_000)]
    if np.ptp(sample) == 0:
        return [0.0, 0.0, 0.0]
    above = np.argwhere(image > threshold_otsu(sample))
    low, high = np.percentile(above, [0.5, 99.5], axis=0)
    return [float((h - l + 1) * float(d)) for l, h, d in zip(low, high, voxel_size_mm)]


def template_brain_probability(magnitude: np.ndarray, affine: np.ndarray, *,
                               min_extent_mm: float = MIN_EXTENT_MM,
                               resolution_mm: float = MASK_REGISTRATION_MM,
                               bias_correct: bool = True) -> TemplateBrain:
    """Register the template to a subject's magnitude and bring its brain onto the subject grid.

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z) or (X, Y, Z, E)
        The subject's magnitude (first echo used; its extent is checked before ANTs is loaded).
    affine : ndarray (4, 4)
        Voxel to world (RAS+ mm) of the subject grid.
    min_extent_mm : float
        The head must reach this far along every axis (else skipped: crop or slab).
    resolution_mm : float
        Grid of the registration.
    bias_correct : bool
        N4 on the 4 mm image first: without it the receive-coil brightening of the scalp
        pulls the affine towards the head's outline (the brain came out 1.8 times too large
        on the Philips 3 T scan).

    Returns
    -------
    TemplateBrain
    """
    started = (time.perf_counter(), time.process_time())
    magnitude = np.asarray(magnitude)
    first = magnitude[..., 0] if magnitude.ndim == 4 else magnitude  # before any copy: 1.4 s on all echoes
    image = np.clip(np.nan_to_num(np.asarray(first, dtype=np.float32)), 0, None)
    # On the registration's block grid: the check needs millimetres, not voxels, and the
    # full-resolution search for the head's voxels took 1.6 s of a 7.7 s step.
    blocks, block_affine = block_mean(image, affine, resolution_mm)
    extent = head_extent_mm(blocks, np.linalg.norm(block_affine[:3, :3], axis=0))
    if min(extent) < min_extent_mm:
        return _skip(f"field of view too small for the template brain: the head spans "
                     f"{' x '.join(f'{e:.0f}' for e in extent)} mm, under {min_extent_mm:.0f} mm "
                     f"along an axis (a crop or slab); magnitude mask only", started,
                     head_extent_mm=extent)
    try:
        import ants

        template_path, template, brain = prepared_template(resolution_mm)
    except Exception as error:  # noqa: BLE001 - any missing piece means: no template step
        return _skip(f"template registration unavailable ({error})", started)
    from qsmiron.register.images import ants_affine, prepare_subject, threshold_brain_mask, to_ants

    coarse = to_ants(blocks, block_affine)
    head = threshold_brain_mask(coarse.numpy(), coarse.spacing, opening_mm=resolution_mm)
    # Start from the head without its outer 8 mm (scalp and skull: the brain never lies there),
    # then refine on the whole head from that start (see ``affine_to_template``).
    moving = prepare_subject(coarse.numpy(), head, ants_affine(coarse), bias_correct=bias_correct,
                             bias_resolution_mm=BIAS_GRID_MM)
    inner = ndimage.binary_erosion(head, structure=_ball(SCALP_SKULL_MM, coarse.spacing))
    # ANTs writes its transforms as files; left in the system's temporary folder they pile up
    # (one per reconstruction) on a cohort's workers.
    with tempfile.TemporaryDirectory(prefix="qsmiron_mask_") as work_dir:
        start = affine_to_template(moving * moving.new_image_like(inner.astype(np.float32)), template,
                                   resolution_mm, iterations=(100,), shrink_factors=(2,), smoothing=(1,),
                                   outprefix=str(Path(work_dir) / "start_"))
        transforms = affine_to_template(moving, template, resolution_mm, initial=start, iterations=(50,),
                                        shrink_factors=(1,), smoothing=(0,),
                                        outprefix=str(Path(work_dir) / "brain_"))
        on_coarse = ants.apply_transforms(fixed=coarse, moving=brain, transformlist=transforms,
                                          whichtoinvert=[True], interpolator="linear").numpy()
        share_inside = _share_inside(on_coarse, head)
        probability = (warp_into_head_box(brain, transforms, image.shape, affine, head)
                       if share_inside >= MIN_INSIDE_HEAD else None)
    checks = {"head_extent_mm": extent, "template_brain_inside_head": round(share_inside, 4),
              "template_brain_volume_ml": round(float((on_coarse >= 0.5).sum()) * float(np.prod(coarse.spacing))
                                                / 1000.0, 1),
              "registration_grid_mm": resolution_mm}
    if share_inside < MIN_INSIDE_HEAD:
        return _skip(f"template registration failed its check: only {100 * share_inside:.0f} % of "
                     f"the template brain lies inside the head (needs {100 * MIN_INSIDE_HEAD:.0f} %); "
                     f"magnitude mask only", started, **checks)
    return TemplateBrain(probability, {"used": True, **_elapsed(started),
                                       "template": str(template_path), **checks})


def _share_inside(on_coarse: np.ndarray, head: np.ndarray) -> float:
    """Share of the registered template brain inside the head grown by one block."""
    grown = ndimage.binary_dilation(head, iterations=1)
    return float(on_coarse[grown].sum() / max(on_coarse.sum(), 1e-9))


def warp_into_head_box(brain, transforms: list[str], shape, affine: np.ndarray, head: np.ndarray) -> np.ndarray:
    """The template brain (ANTs image) on the subject grid, resampled only in the head's box.

    ``head`` is the head mask on the 4 mm block grid of ``shape``; outside its bounding box
    (plus one block) nothing can be brain, and resampling costs per output voxel.
    """
    import ants

    from qsmiron.register.images import to_ants

    factors = np.asarray(shape[:3]) / np.asarray(head.shape)
    lower = [max(0, int(np.floor((b.start - 1) * f))) for b, f in zip(_box(head), factors)]
    upper = [min(n, int(np.ceil((b.stop + 1) * f))) for b, f, n in zip(_box(head), factors, shape)]
    box = tuple(slice(a, b) for a, b in zip(lower, upper))
    box_affine = np.array(affine, float)
    box_affine[:3, 3] = (box_affine @ np.array([*lower, 1.0]))[:3]
    reference = to_ants(np.zeros([b.stop - b.start for b in box], np.float32), box_affine)
    probability = np.zeros(tuple(shape[:3]), np.float32)
    probability[box] = np.clip(ants.apply_transforms(fixed=reference, moving=brain, transformlist=transforms,
                                                     whichtoinvert=[True], interpolator="linear").numpy(), 0, 1)
    return probability


def _ball(radius_mm: float, spacing) -> np.ndarray:
    half = [int(np.floor(radius_mm / float(d) + 1e-9)) for d in spacing]
    axes = [np.arange(-h, h + 1) * float(d) for h, d in zip(half, spacing)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return (x * x + y * y + z * z) <= radius_mm ** 2 + 1e-9


_PREPARING = threading.Lock()
"""Held while ``prepared_template`` reads the template, so the two threads that may ask do not
both read it."""


def prepared_template(resolution_mm: float = MASK_REGISTRATION_MM):
    """The template's path, the template and its brain (ANTs images), with its grid for a
    registration at ``resolution_mm`` made (``register.normalise.template_grid``): once per
    process, whichever thread asks first (``start_importing_ants``'s or the registration's)."""
    from qsmiron.atlas.builtin import template_brain_path
    from qsmiron.register.normalise import template_grid

    with _PREPARING:
        path = template_brain_path()
        template, brain = _template_and_brain(str(path))
        template_grid(template, resolution_mm, margin_mm=TEMPLATE_GRID_MARGIN_MM)
    return path, template, brain


@functools.lru_cache(maxsize=2)
def _template_and_brain(path: str):
    """The template (ANTs) and its brain as a 0/1 image, read once per process."""
    import ants

    template = ants.image_read(path)
    return template, template.new_image_like((template.numpy() > 0).astype(np.float32))


def _box(mask: np.ndarray) -> tuple[slice, ...]:
    found = ndimage.find_objects(mask.astype(np.int8))
    return found[0] if found else tuple(slice(0, n) for n in mask.shape)


def block_mean(image: np.ndarray, affine: np.ndarray, resolution_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` averaged over blocks of about ``resolution_mm`` and the affine of the block grid.

    Each axis is reduced by the whole factor ``round(resolution_mm / voxel)`` (at least 1); the
    block centres keep their world position (oblique affines included).
    """
    affine = np.asarray(affine, float)
    voxel = np.linalg.norm(affine[:3, :3], axis=0)
    factors = [max(1, int(round(resolution_mm / v))) for v in voxel]
    n = [s // f for s, f in zip(image.shape, factors)]
    trimmed = image[: n[0] * factors[0], : n[1] * factors[1], : n[2] * factors[2]]
    blocks = trimmed.reshape(n[0], factors[0], n[1], factors[1], n[2], factors[2]).mean(axis=(1, 3, 5))
    block_affine = affine.copy()
    block_affine[:3, :3] = affine[:3, :3] * np.asarray(factors, float)
    block_affine[:3, 3] = affine[:3, :3] @ ((np.asarray(factors, float) - 1) / 2.0) + affine[:3, 3]
    return blocks.astype(np.float32), block_affine


def affine_to_template(subject, template, resolution_mm: float, *, outprefix: str,
                       initial: list[str] | None = None, iterations=(100, 50), shrink_factors=(2, 1),
                       smoothing=(1, 0)) -> list[str]:
    """Affine transform files (subject -> template) from Mattes MI inside the template's brain.

    The files are written under ``outprefix``, whose folder the caller owns and removes.

    The metric is evaluated only within the template brain grown by 8 mm: the subject image
    shows the whole head, the template the brain alone, and without this mask the affine
    stretches the brain towards the scalp (on the Philips 3 T scan the registered brain came
    out at 1.4 to 2.5 L between runs). Even with it, one run in six from the centre-of-mass
    start ended stretched (1.95 L against 1.39-1.41 L); from the start given by the head
    without its outer 8 mm (1.20-1.22 L, stable but biased small by the missing rim) the
    whole-head registration is stable (``bench_mask.py``); from there one level of 50
    iterations suffices. The start itself needs only the coarse level (100 iterations at half
    the registration's resolution; ``template_brain_probability``): its full-resolution level
    cost 0.8 s and changed neither the final mask of 10 simulated heads nor the spread of the
    Philips brain (1.41-1.43 L over 16 runs without it, 1.41-1.43 L over 11 runs with it;
    template brain Dice 0.988-0.996 with a reference run, 0.990-0.996 with it); halving the
    second registration too (25 iterations) was not stable (one Philips run in five 1.38 L,
    Dice 0.95).
    """
    import ants

    from qsmiron.register.ants_backend import ants_random_seed
    from qsmiron.register.normalise import template_grid

    fixed = template_grid(template, resolution_mm, margin_mm=TEMPLATE_GRID_MARGIN_MM)
    grow = max(1, int(round(8.0 / resolution_mm)))
    metric_mask = fixed.new_image_like(ndimage.binary_dilation(fixed.numpy() > 0, iterations=grow)
                                       .astype(np.float32))
    with ants_random_seed(MASK_REGISTRATION_SEED):
        result = ants.registration(fixed=fixed, moving=subject, type_of_transform="Affine", mask=metric_mask,
                                   initial_transform=initial[0] if initial else None,
                                   aff_metric="mattes", aff_sampling=32, aff_random_sampling_rate=0.25,
                                   aff_iterations=tuple(iterations), aff_shrink_factors=tuple(shrink_factors),
                                   aff_smoothing_sigmas=tuple(smoothing), outprefix=outprefix)
    return list(result["fwdtransforms"])


__all__ = ["TemplateBrain", "template_brain_probability", "affine_to_template", "block_mean",
           "warp_into_head_box", "head_extent_mm", "MIN_EXTENT_MM"]
