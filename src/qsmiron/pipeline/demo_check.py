"""What ``qsmiron demo`` prints after the run: the check against the planted truth and the time
each step took (wall and CPU), summed over the subjects."""

from __future__ import annotations

import resource
from collections import defaultdict
from pathlib import Path

import pandas as pd

from qsmiron.io.derivatives import DemoPaths, cohort_paths, study_paths
from qsmiron.stats.regions import STATISTIC_NAMES


def truth_comparison(bids_dir: Path, out_dir: Path, statistic: str | None = None):
    """The recovered chi (whole-brain reference) and group comparison of a run on a simulated
    dataset (derivatives in ``out_dir/qsmiron``) against the truth in ``bids_dir``'s
    ``derivatives/truth``: a ``TruthComparison``. ``statistic`` picks the regional summary
    compared (default: the one the statistics analyse by default); the group comparison is the
    run's, whatever summary it analysed."""
    from qsmiron.io.participants import read_participants
    from qsmiron.simulate.truth import compare_with_truth, truth_dir_of
    from qsmiron.stats.regions import analysed_statistic, read_regions, select_measure

    derivatives = cohort_paths(Path(out_dir) / "qsmiron")
    table = read_regions(derivatives.regions)
    # The demo's study leaves the statistic to its default, as resolved here.
    statistic = analysed_statistic(table, statistic)
    regions = select_measure(table, "chi", "whole_brain", statistic=statistic)
    comparison = pd.read_csv(study_paths(derivatives.group).group_comparison, sep="\t")
    if "measure" in comparison:
        comparison = comparison[comparison["measure"] == "chi"]
    participants = Path(bids_dir) / "participants.tsv"
    result = compare_with_truth(truth_dir_of([participants]), regions, comparison,
                                read_participants(participants).frame)
    result.statistic = statistic
    return result


def demo_truth_check(paths: DemoPaths):
    """Compare the demo's recovered chi and group comparison with the simulation truth; write
    ``paths.truth_effects`` and ``paths.truth_regions`` and return the ``TruthComparison``."""
    from qsmiron.io.atomic import write_tsv_atomic

    result = truth_comparison(paths.bids, paths.out_dir)
    write_tsv_atomic(paths.truth_effects, result.effects)
    write_tsv_atomic(paths.truth_regions, result.regions)
    return result


def step_times(paths: DemoPaths) -> pd.DataFrame:
    """Per step of the subjects (``recon``, ``roi``, ``qc``): subjects, wall and CPU seconds summed.

    Wall from each subject's done-marker; CPU from the records' steps (recon and regions),
    the ``qc`` step's CPU is not recorded (n/a).
    """
    from qsmiron.pipeline.cache import read_marker
    from qsmiron.records.recon import ReconRecord
    from qsmiron.records.regions import RegionsRecord

    derivatives = cohort_paths(paths.out_dir / "qsmiron")
    wall: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for marker_path in sorted(derivatives.root.glob("sub-*/**/.qsmiron-done.json")):
        marker = read_marker(marker_path.parent)
        if marker is None:
            continue
        for step, seconds in marker.step_seconds.items():
            wall[step] += seconds
            count[step] += 1
        for role, step, kind in (("recon_record", "recon", ReconRecord), ("regions_record", "roi", RegionsRecord)):
            if role in marker.outputs:
                record = kind.read(marker_path.parent / marker.outputs[role].file)
                cpu[step] += sum(info.cpu_seconds for info in record.steps)
    return pd.DataFrame([{"step": step, "subjects": count[step], "wall_s": round(wall[step], 1),
                          "cpu_s": round(cpu[step], 1) if step in cpu else None} for step in wall])


def process_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def summary_lines(paths: DemoPaths, phases: dict[str, float], cpu_seconds: float) -> list[str]:
    """The demo's closing lines: the truth check, then the time of each phase and step."""
    lines = []
    try:
        comparison = demo_truth_check(paths)
        lines.append(f"check against the planted truth (whole-brain-referenced chi, each region's "
                     f"{STATISTIC_NAMES[comparison.statistic]}):")
        lines += ["  " + line for line in comparison.summary_lines()]
        lines.append(f"  (tables: {Path(paths.truth_effects).name}, {Path(paths.truth_regions).name})")
    except (OSError, KeyError, ValueError, TypeError) as exc:
        lines.append(f"check against the planted truth not possible: {type(exc).__name__}: {exc}")
    lines.append("time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in phases.items())
                 + f"; CPU {cpu_seconds:.0f} s (this process and its workers)")
    times = step_times(paths)
    for row in times.itertuples():
        cpu = "n/a" if row.cpu_s is None or pd.isna(row.cpu_s) else f"{row.cpu_s:.0f} s"
        lines.append(f"  step {row.step}: {row.subjects} subjects, wall {row.wall_s:.0f} s summed "
                     f"({row.wall_s / max(row.subjects, 1):.1f} s each), CPU {cpu}")
    return lines
