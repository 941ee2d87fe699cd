"""Parameters of the reconstruction: one block per stage, generated from the declared methods.

No block is written by hand: every one comes from ``qsmiron.recon.stages.RECON_STAGES``; the one
rule between two stages (a total field inversion after the background method ``none``, and
only there) is ``check_total_field_pairing``.
A stage's block holds ``method`` (one of its selectable methods) and one sub-block per method
with that method's keyword-only parameters, their types, bounds and defaults read from its
function's signature (``qsmiron.methods``). In a settings file::

    [recon.background]
    method = "pdf"              # pdf_ismv (default), ismv, vsharp, resharp, lbv, pdf, none
    [recon.background.pdf]
    tol = 0.01
    [recon.inversion.rts]
    max_iter = 40

Unknown stages, methods and parameters are errors that name the key. Defaults follow the
QSM consensus recommendations (Magn Reson Med 2024;91:1834); the reasons for each are in the
methods' docstrings. ``qsmiron config`` prints the whole tree with every default.

The generated classes (``BackgroundSettings``, ``BackgroundPdfSettings``, ...) are attributes
of this module, so that a configuration pickles to worker processes.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, create_model

from qsmiron.errors import InputError
from qsmiron.recon import invert
from qsmiron.recon.stages import RECON_STAGES
from qsmiron.settings_base import Settings


def _build() -> type[Settings]:
    fields: dict[str, Any] = {}
    for stage in RECON_STAGES:
        model = stage.settings_model()
        globals()[model.__name__] = model
        for name in stage.selectable():
            sub = stage.method_settings_model(name)
            globals()[sub.__name__] = sub
        fields[stage.name] = (model, Field(default_factory=model, description=stage.label))
    return create_model("ReconSettings", __base__=Settings, __module__=__name__,
                        __doc__="All reconstruction parameters, one block per stage.", **fields)


ReconSettings = _build()
"""All reconstruction parameters: ``recon.<stage>.method`` and ``recon.<stage>.<method>.<parameter>``."""


def check_total_field_pairing(settings: Any) -> None:
    """A total field inversion runs after the background method ``none``, and only it does.

    Raises
    ------
    InputError
        Naming the two settings that disagree.
    """
    total = settings.inversion.method in invert.TOTAL_FIELD_METHODS
    kept = settings.background.method == "none"
    if total != kept:
        raise InputError(f"recon.inversion.method = {settings.inversion.method!r} needs "
                         f"recon.background.method = {'none' if total else 'a removal method'!r}, "
                         f"not {settings.background.method!r} (a total field inversion models the "
                         f"background itself; every other inversion needs it removed)", step="background")
