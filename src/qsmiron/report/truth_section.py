"""The report's check against the simulation truth, for a dataset made by ``qsmiron simulate``.

When the scans come from a simulated BIDS dataset (its ``derivatives/truth/simulation.json``),
the report compares what the run recovered with what was planted
(``qsmiron.simulate.truth.compare_with_truth``): a scatter of recovered against true regional
chi per subject, r, bias and RMSE per region, and the planted group effect against the
study's estimate and its 95 % CI. Any other dataset gets no such section.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd

from qsmiron.records.cohort import Provenance
from qsmiron.simulate.truth import TruthComparison, compare_with_truth, truth_dir_of

TEMPLATE_DIR = Path(__file__).parent / "templates"


def scatter_png(comparison: TruthComparison, highlight: tuple[str, ...] = ()) -> bytes:
    """Recovered against true chi (ppb), one panel per region, both hemispheres, identity line."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from qsmiron.roi.qc import QC_DPI

    regions = list(dict.fromkeys(comparison.pairs["region"]))
    regions = [r for r in highlight if r in regions] + [r for r in regions if r not in highlight]
    n_cols = 4
    n_rows = int(np.ceil(len(regions) / n_cols))
    fig = Figure(figsize=(10.0, 2.5 * n_rows + 0.3), facecolor="white")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    agreement = comparison.regions.set_index(["region", "hemisphere"])
    for ax, region in zip(axes, regions):
        rows = comparison.pairs[comparison.pairs["region"] == region]
        for hemisphere, colour, marker in (("L", "#0072B2", "o"), ("R", "#CC79A7", "s")):
            side = rows[rows["hemisphere"] == hemisphere]
            ax.scatter(side["true_ppm"] * 1000, side["recovered_ppm"] * 1000, s=12, color=colour, marker=marker,
                       alpha=0.8, label=hemisphere)
        values = np.concatenate([rows["true_ppm"], rows["recovered_ppm"]]) * 1000
        values = values[np.isfinite(values)]
        if values.size:
            low, high = float(values.min()), float(values.max())
            ax.plot([low, high], [low, high], color="0.4", lw=0.8, ls="--")
        text = ", ".join(f"{h} r {agreement.loc[(region, h), 'r']:.2f}" for h in ("L", "R")
                         if (region, h) in agreement.index)
        ax.set_title(f"{region}: {text}", fontsize=9, fontweight="bold" if region in highlight else "normal")
        ax.tick_params(labelsize=7)
    for ax in axes[len(regions):]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7, title="hemisphere", title_fontsize=7, loc="upper left")
    fig.supxlabel("true chi (ppb, relative to the whole brain)", fontsize=9)
    fig.supylabel("recovered chi (ppb)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=QC_DPI)
    return buffer.getvalue()


def _number(value, spec: str = "%.2f") -> str:
    """``spec`` formatting, ``n/a`` for a missing or non-finite value."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return spec % value if np.isfinite(value) else "n/a"


def _order(table: pd.DataFrame, column: str) -> dict:
    """The order values first appear in ``table[column]`` (regions in atlas order, L before R)."""
    return {value: rank for rank, value in enumerate(dict.fromkeys(table[column]))}


def _raw_datasets(provenance: Provenance) -> list[Path]:
    """Where the scans came from: the raw dataset the derivatives link (``DatasetLinks.raw``,
    relative to the derivatives' top), and any absolute input path the records hold."""
    import json

    found = [Path(path) for record in provenance.recon_records for path in record.inputs.magnitude[:1]
             if Path(path).is_absolute()]
    if provenance.pipeline is not None and provenance.pipeline.derivatives:
        root = Path(provenance.pipeline.derivatives)
        try:
            raw = json.loads((root / "dataset_description.json").read_text(encoding="utf-8"))["DatasetLinks"]["raw"]
        except (OSError, ValueError, KeyError, TypeError):
            raw = None
        if isinstance(raw, str) and "://" not in raw:
            found.insert(0, root / raw / "dataset_description.json")
    return found


def truth_comparison_of(provenance: Provenance | None, regions: pd.DataFrame, group_comparison: pd.DataFrame | None,
                        participants: pd.DataFrame) -> TruthComparison | None:
    """The comparison with the simulation truth, or None when the scans are not simulated (or
    the values are not under the whole-brain reference the truth is given in)."""
    if provenance is None or group_comparison is None or group_comparison.empty:
        return None
    truth_dir = truth_dir_of(_raw_datasets(provenance))
    if truth_dir is None:
        return None
    if "reference" in regions and set(regions["reference"].dropna().astype(str)) - {"whole_brain"}:
        return None
    return compare_with_truth(truth_dir, regions, group_comparison, participants)


def truth_section_html(provenance: Provenance | None, regions: pd.DataFrame, group_comparison: pd.DataFrame | None,
                       participants: pd.DataFrame):
    """The report's section comparing the run with the simulation truth, as markup (empty
    markup for a dataset that is not simulated)."""
    import jinja2
    import markupsafe

    comparison = truth_comparison_of(provenance, regions, group_comparison, participants)
    if comparison is None or comparison.pairs.empty:
        return markupsafe.Markup("")
    highlight = tuple(dict.fromkeys(comparison.effects["region"])) if not comparison.effects.empty else ()
    uri = "data:image/png;base64," + base64.b64encode(scatter_png(comparison, highlight)).decode("ascii")
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    regions_table = comparison.regions.sort_values(["region", "hemisphere"], kind="mergesort",
                                                   key=lambda c: c.map(_order(comparison.regions, c.name)))
    environment.filters["num"] = _number
    return markupsafe.Markup(environment.get_template("truth.html.j2").render(
        effects=comparison.effects.to_dict("records"), regions=regions_table.to_dict("records"),
        scatter_uri=uri, n_subjects=int(comparison.pairs["participant_id"].nunique()),
        n_inside=int(comparison.effects["planted_in_ci"].sum()) if not comparison.effects.empty else 0))
