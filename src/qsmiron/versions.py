"""The one collector of software versions, recorded in every output record.

Every record (reconstruction, regions, study results) lists the versions of qsmiron, Python
and the packages that can change a number in it; one list, so that the records agree on
what they name and a report can merge them.
"""

from __future__ import annotations

import functools
import platform
from importlib import metadata

RECORDED_PACKAGES = (
    "numpy", "scipy", "numba", "nibabel", "scikit-image", "pydantic", "antspyx", "pandas",
    "matplotlib", "statsmodels", "scikit-learn", "lifelines",
)
"""Distributions whose versions every record lists (the ones qsmiron's numbers depend on)."""


def software_versions() -> dict[str, str | None]:
    """``{"qsmiron": ..., "python": ..., package: version or None}`` for ``RECORDED_PACKAGES``.

    A package that is not installed is listed with None (never an error): the records say
    what was there.
    """
    return dict(_collect())


@functools.lru_cache(maxsize=1)
def _collect() -> tuple[tuple[str, str | None], ...]:
    from qsmiron import __version__

    versions: list[tuple[str, str | None]] = [("qsmiron", __version__),
                                              ("python", platform.python_version())]
    for name in RECORDED_PACKAGES:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, None))
    return tuple(versions)
