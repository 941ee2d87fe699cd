"""Parameters of normalisation to the template."""

from __future__ import annotations

from qsmiron.settings_base import Settings


class RegistrationSettings(Settings):
    """ANTs registration of the subject's magnitude to the template."""

    resolution_mm: float = 2.0
