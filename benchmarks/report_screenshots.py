"""Render the study report of a realistic simulated cohort and screenshot it in headless Chromium.

A cohort of 40 (20 MOH, 20 CM; planted d = -1.0 in VeP and Pu, SDS and relapse tied to VeP)
drawn by ``qsmiron.simulate.clinical``, scanned at two sites and two sessions, with chi and R2*
regional values; the study file declares the primary regions, and with ``--sections`` also the
optional sections (ComBat, longitudinal mixed models, normative scores). The group level runs
as ``qsmiron run`` runs it, then Chromium prints the report to PDF and to PNG slices (1280 px
wide, 1600 px tall each) for a person to look at.

Usage::

    PYTHONPATH=src python benchmarks/report_screenshots.py OUT_DIR [--sections] [--no-shots]

Prints the report's path, the PDF's page count, the seconds the group level took and the
PNG files written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

STUDY = """\
covariates = ["age", "sex"]
primary_regions = ["VeP", "Pu"]
regions = ["VeP", "Pu", "Ca", "NAC", "GPe", "GPi", "SNc_PBP_VTA", "RN", "SNr", "STH"]
[groups]
compare = ["MOH", "CM"]
[associations]
variables = ["sds", "ldq", "hit6", "midas", "headache_days"]
primary_variables = ["sds"]
[relapse]
outcome = "relapse"
time = "time_to_relapse"
event = "relapse"
count = "relapse_count"
"""

SECTIONS = """\
[harmonise]
batch = "site"
[longitudinal]
time = "months"
[normative]
reference_group = "CM"
covariates = ["age"]
"""
"""The optional sections (``--sections``): ComBat across the two sites, mixed models over the two
sessions, normative scores against CM."""

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def make_study(folder: Path, n_subjects: int = 40, seed: int = 7, *, sections: bool = False) -> dict[str, Path]:
    """participants.tsv/.json, sessions tables, regions.tsv and study.toml under ``folder``."""
    from qsmiron.simulate.clinical import PARTICIPANTS_JSON, sample_cohort
    from qsmiron.simulate.settings import SimulationSettings

    rng = np.random.default_rng(seed)
    settings = SimulationSettings(group_effect_d={"VeP": -1.0, "Pu": -1.0}, sds_r=-0.5, relapse_r=-0.45)
    cohort = sample_cohort(n_subjects, rng, settings)
    participants = cohort.participants.copy()
    participants["site"] = np.where(rng.random(len(participants)) < 0.5, "A", "B")
    folder.mkdir(parents=True, exist_ok=True)
    participants.to_csv(folder / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    (folder / "participants.json").write_text(json.dumps(
        {**PARTICIPANTS_JSON, "site": {"Description": "Scanner site"}}, indent=2))
    site_offset = dict(zip(participants["participant_id"], np.where(participants["site"] == "B", 0.008, 0.0)))
    chi = cohort.region_chi[cohort.region_chi["hemisphere"].isin(["L", "R"])]
    rows, sessions = [], []
    for session, months in (("ses-1", 0.0), ("ses-2", 12.0)):
        for row in chi.itertuples():
            value = row.chi_ppm + site_offset[row.participant_id] + 0.0003 * months + rng.normal(0, 0.004)
            r2star = 18.0 + 150.0 * value + rng.normal(0, 1.5)
            base = {"participant_id": row.participant_id, "session": session, "region": row.region,
                    "hemisphere": row.hemisphere}
            rows.append({**base, "measure": "chi", "reference": "whole_brain", "unit": "ppm", "mean": value})
            rows.append({**base, "measure": "r2star", "reference": "n/a", "unit": "s^-1", "mean": r2star})
        for pid, age in zip(participants["participant_id"], participants["age"]):
            sessions.append({"participant_id": pid, "session_id": session, "months": months,
                             "age": age + months / 12})
    pd.DataFrame(rows).to_csv(folder / "regions.tsv", sep="\t", index=False, na_rep="n/a")
    pd.DataFrame(sessions).to_csv(folder / "sessions.tsv", sep="\t", index=False)
    (folder / "study.toml").write_text(STUDY + (SECTIONS if sections else ""))
    return {"participants": folder / "participants.tsv", "regions": folder / "regions.tsv",
            "sessions": folder / "sessions.tsv", "study": folder / "study.toml"}


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        sys.exit("chromium is not installed")
    return path


def print_pdf(report: Path, pdf: Path, profile: Path) -> int:
    """Print ``report`` to ``pdf`` (A4, Chromium's defaults) and return its page count."""
    subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
                    f"--print-to-pdf={pdf}", report.resolve().as_uri()], check=True, capture_output=True, timeout=180)
    return len(__import__("re").findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))


def screenshots(report: Path, out: Path, profile: Path, *, width: int = 1280, height: int = 1600,
                max_shots: int = 16, prefix: str = "report") -> list[Path]:
    """The whole page as PNG slices ``height`` px tall (one tall screenshot, cut up)."""
    import matplotlib.image

    tall = out / f"{report.stem}_full.png"
    subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height * max_shots}",
                    f"--screenshot={tall}", report.resolve().as_uri()], check=True, capture_output=True, timeout=300)
    pixels = matplotlib.image.imread(tall)
    grey = pixels[..., :3].mean(axis=2)
    rows = np.flatnonzero((grey < 0.99).any(axis=1))
    bottom = int(rows[-1]) + 20 if rows.size else pixels.shape[0]
    written = []
    for index, top in enumerate(range(0, bottom, height)):
        path = out / f"{prefix}_{index:02d}.png"
        matplotlib.image.imsave(path, pixels[top:min(top + height, bottom)])
        written.append(path)
    tall.unlink()
    return written


def print_screenshots(report: Path, out: Path, profile: Path) -> list[Path]:
    """The page laid out as it prints (print rules on, A4 text width of 703 px), as PNG slices."""
    page = out / "print_layout.html"
    page.write_text(report.read_text(encoding="utf-8").replace("@media print", "@media all"), encoding="utf-8")
    return screenshots(page, out, profile, width=703, height=1000, max_shots=40, prefix="print")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--sections", action="store_true",
                        help="with [harmonise], [longitudinal] and [normative]")
    parser.add_argument("--no-shots", action="store_true", help="only write the report and the PDF")
    args = parser.parse_args()
    from qsmiron.pipeline.group import run_group_analysis

    out = args.out_dir
    inputs = make_study(out / "inputs", sections=args.sections)
    start, cpu = time.perf_counter(), time.process_time()
    report = run_group_analysis(inputs["regions"], inputs["participants"], out / "group", study_path=inputs["study"],
                                session="ses-1", sessions=inputs["sessions"])
    print(f"report: {report} ({time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu:.1f} s CPU, "
          f"{report.stat().st_size / 1e6:.2f} MB)")
    pages = print_pdf(report, out / "report.pdf", out / "profile")
    print(f"PDF: {out / 'report.pdf'}, {pages} pages")
    if not args.no_shots:
        for path in screenshots(report, out, out / "profile") + print_screenshots(report, out, out / "profile"):
            print(path)


if __name__ == "__main__":
    main()
