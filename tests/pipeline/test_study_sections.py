"""``qsmiron run`` with a study file holding ``[harmonise]``, ``[longitudinal]``, ``[normative]`` and
``[voxelwise]``: every output is written and recorded in ``results.json``.

The per-subject steps are light (the wiring of the group level is under test, not the
reconstruction): one writes a regional table, the other a chi map on the template grid under
the name the roi step gives it (``qsmiron.io.derivatives.template_map_path``). The real roi
step's template-space map is checked in ``test_bids_app``'s end-to-end test.
"""

from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from qsmiron.config import QsmironConfig
from qsmiron.errors import InputError
from qsmiron.io.atomic import write_tsv_atomic
from qsmiron.io.derivatives import CohortPaths, template_map_path
from qsmiron.io.nifti import save_nifti
from qsmiron.pipeline.bids_app import read_status, run_bids_app, settings_for_study
from qsmiron.records.study import StudyRecord

GROUPS = {"01": "MOH", "02": "MOH", "03": "MOH", "04": "MOH", "05": "CM", "06": "CM", "07": "CM", "08": "CM"}
SITES = {"01": "A", "02": "A", "03": "B", "04": "B", "05": "A", "06": "A", "07": "B", "08": "B"}
MONTHS = {"1": 0.0, "2": 12.0}
NO_MAP = ("08", "2")
"""sub-08's second session has no template-space map (a subject whose warp failed)."""

STUDY = """\
covariates = ["age"]
[groups]
compare = ["MOH", "CM"]
[associations]
variables = []
[harmonise]
batch = "site"
[longitudinal]
time = "months"
[normative]
reference_group = "CM"
covariates = ["age"]
[voxelwise]
n_permutations = 19
seed = 1
"""


@functools.lru_cache(maxsize=1)
def _template_grid():
    """The template grid and the box of the atlas regions (plus 4 voxels), where maps have values."""
    from qsmiron.atlas.load import load_atlas, load_template

    atlas = load_atlas("cit168")
    template = load_template(atlas.template_path)
    labels = atlas.label_array()
    where = np.argwhere(labels > 0)
    box = tuple(slice(int(a) - 4, int(b) + 5) for a, b in zip(where.min(0), where.max(0)))
    vep_left = int(atlas.labels.loc[atlas.labels["name"] == "VeP_LH", "index"].iloc[0])
    return template.affine, template.shape[:3], atlas.space, box, labels[box] == vep_left


def _label_parts(job):
    participant = job.unit.participant_id.removeprefix("sub-")
    session = job.unit.session.removeprefix("ses-")
    return participant, session


def regions_step(job, log):
    """Regional means with a site offset, a lower VeP in MOH and a rise over the months."""
    participant, session = _label_parts(job)
    rng = np.random.default_rng(int(participant) * 10 + int(session))
    moh = GROUPS[participant] == "MOH"
    rows = []
    for region in ("VeP", "Pu"):
        for hemisphere in ("L", "R"):
            value = (0.06 + 0.01 * (SITES[participant] == "B") - 0.01 * (moh and region == "VeP")
                     + 0.0002 * MONTHS[session] + 0.003 * rng.normal())
            rows.append({"region": region, "hemisphere": hemisphere, "mean_ppm": value})
    job.out_dir.mkdir(parents=True, exist_ok=True)
    tsv = CohortPaths.regions_table(job.out_dir, job.unit.label, "cit168")
    write_tsv_atomic(tsv, pd.DataFrame(rows))
    return {"regions": tsv}


def template_map_step(job, log):
    """Chi on the template grid around the atlas regions (0 = no data elsewhere); MOH lower in VeP L."""
    participant, session = _label_parts(job)
    if (participant, session) == NO_MAP:
        return {}
    affine, shape, space, box, vep_left = _template_grid()
    rng = np.random.default_rng(100 + int(participant) * 10 + int(session))
    values = 0.05 + 0.005 * rng.normal(size=vep_left.shape)
    values[vep_left] -= 0.05 * (GROUPS[participant] == "MOH")
    chi = np.zeros(shape, np.float32)
    chi[box] = values
    path = save_nifti(template_map_path(job.out_dir, job.unit.label, space), chi, affine)
    return {"template_chimap": path}


STEPS = (("regions", regions_step), ("template_map", template_map_step))


def _dataset(root: Path, tiny_subject) -> Path:
    bids = root / "bids"
    for index, label in enumerate(GROUPS):
        for session, months in MONTHS.items():
            tiny_subject(bids, label, seed=10 * index + int(session), session=session)
        (bids / f"sub-{label}" / f"sub-{label}_sessions.tsv").write_text(
            "session_id\tmonths\tage\n" + "".join(f"ses-{s}\t{m:g}\t{40 + index + m / 12:g}\n"
                                                  for s, m in MONTHS.items()))
    (bids / "participants.tsv").write_text("participant_id\tgroup\tsite\tage\n" + "".join(
        f"sub-{label}\t{GROUPS[label]}\t{SITES[label]}\t{40 + i}\n" for i, label in enumerate(GROUPS)))
    return bids


def test_a_run_with_all_four_sections_writes_and_records_every_output(tmp_path, tiny_subject):
    bids = _dataset(tmp_path, tiny_subject)
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    config = QsmironConfig.model_validate({"pipeline": {"progress": False, "n_procs": 1}})
    result = run_bids_app(bids, tmp_path / "out", study_path=study, config=config, steps=STEPS,
                          echo=lambda line: None)
    root = tmp_path / "out" / "qsmiron"
    group = root / "group"
    assert set(read_status(root)["status"]) == {"done"}
    assert result.report == group / "report.html"

    # [harmonise], [longitudinal], [normative]: once, at the top of the group folder
    for name in ("regions_harmonised.tsv", "harmonise_site_effects.tsv", "longitudinal.tsv", "normative.tsv"):
        assert (group / name).exists(), name
    longitudinal = pd.read_csv(group / "longitudinal.tsv", sep="\t")
    assert set(longitudinal.loc[longitudinal["term"] == "group:time", "region"]) == {"VeP", "Pu"}

    for session, n_maps in (("ses-1", 8), ("ses-2", 7)):
        folder = group / session
        record = StudyRecord.read(folder / "results.json")
        # the regional statistics ran on the harmonised values
        assert record.settings.regions_table == str(group / "regions_harmonised.tsv")
        assert {row.session for row in record.harmonisation.site_effects} == {session}
        assert record.harmonisation.n_harmonised == 16 and record.harmonisation.preserved == ["group", "age"]
        assert [row.term for row in record.longitudinal.interactions] == ["group:time"] * 4
        assert [item.session for item in record.normative.sessions] == [session]
        assert record.normative.sessions[0].n_reference == 4 and "not population norms" in record.normative.methods
        # [voxelwise]: once per session, beside its results.json
        voxelwise = record.voxelwise
        assert voxelwise.session == session and voxelwise.settings.n_permutations == 19
        contrast = voxelwise.contrasts[0]
        assert (contrast.kind, contrast.n, contrast.note) == ("group", n_maps, "")
        assert voxelwise.n_voxels > 50_000 and "permutation" in voxelwise.methods
        for name in ("voxelwise_clusters.tsv", "voxelwise_contrasts.tsv", "voxelwise_mask.nii.gz", "voxelwise.json",
                     contrast.t_map, contrast.logp_map, contrast.figure):
            assert (folder / name).exists(), name
        t_map = nib.load(folder / contrast.t_map)
        assert t_map.shape == (193, 229, 193)
        # every file the record names exists, relative to the results' folder
        for role in ("voxelwise:clusters", "voxelwise:record", "harmonisation:regions_harmonised",
                     "longitudinal:longitudinal", "normative:normative"):
            assert role in record.files, role
        missing = [name for name in record.files.values() if not (folder / name).exists()]
        assert missing == []
    # the scan without a map is left out of that session's voxel-wise analysis, and said so
    second = StudyRecord.read(group / "ses-2" / "results.json")
    left_out = [e for e in second.exclusions if e.analysis == "voxelwise"]
    assert [e.participant_id for e in left_out] == ["sub-08"]
    assert second.exclusion_counts["voxelwise"] == 1
    assert any("not harmonised" in warning for warning in second.warnings)


def _study_file(tmp_path, section: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(section)
    return path


def test_a_whole_brain_voxelwise_mask_makes_the_syn_warp_cover_the_brain(tmp_path):
    lines = []
    study = _study_file(tmp_path, '[voxelwise]\nmask = "brain"\n')
    adapted = settings_for_study(QsmironConfig(), study, lines.append)
    assert adapted.registration.syn_region == "brain" and len(lines) == 1
    subcortical = _study_file(tmp_path, "[voxelwise]\n", "subcortical.toml")
    assert settings_for_study(QsmironConfig(), subcortical, lines.append).registration.syn_region == "atlas"
    chosen = QsmironConfig.model_validate({"registration": {"syn_region": "atlas"}})
    with pytest.raises(InputError, match='syn_region = "atlas"') as error:
        settings_for_study(chosen, study, lines.append)
    assert error.value.path == str(study) and "\n" not in str(error.value)
    # affine only: no SyN domain to widen
    affine = QsmironConfig.model_validate({"registration": {"syn_region": "atlas", "syn_iterations": []}})
    assert settings_for_study(affine, study, lines.append) == affine
    no_warp = QsmironConfig.model_validate({"registration": {"warp_chi_to_template": False}})
    with pytest.raises(InputError, match="warp_chi_to_template off"):
        settings_for_study(no_warp, subcortical, lines.append)


def test_the_group_level_refuses_a_brain_mask_on_scans_warped_only_around_the_atlas(tmp_path):
    from qsmiron.pipeline.bids_app import _check_voxelwise_registrations
    from qsmiron.records.cohort import ScanRecords
    from qsmiron.records.regions import RegionsRecord, RegistrationInfo

    def scan(domain, transforms=("rigid", "affine", "SyN")):
        registration = RegistrationInfo.model_construct(domain=domain, transforms=list(transforms))
        return ScanRecords.model_construct(participant_id="sub-01", session="ses-1",
                                           regions=RegionsRecord.model_construct(registration=registration))

    study = _study_file(tmp_path, '[voxelwise]\nmask = "brain"\n')
    _check_voxelwise_registrations(study, [scan("brain"), scan("atlas", ("rigid", "affine"))])
    with pytest.raises(InputError, match=r"1 scan\(s\) were registered so \(sub-01 ses-1\)"):
        _check_voxelwise_registrations(study, [scan("brain"), scan("atlas")])
    _check_voxelwise_registrations(_study_file(tmp_path, "[voxelwise]\n", "subcortical.toml"), [scan("atlas")])
