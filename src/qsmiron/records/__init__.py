"""The typed records that flow between layers and are written beside every output.

- ``StepInfo``: what one step did (method, parameters, timings, notes), for every stage;
- ``ReconRecord``: one reconstruction (``recon.json``), from ``qsmiron.pipeline.single``;
- ``RegionsRecord``: one regional measurement (the ROI JSON), from ``qsmiron.roi.api``;
- ``AnalysisSettings`` and ``StudyRecord``: one study analysis (``results.json``), from
  ``qsmiron.stats``, with its ``StudyAnswers`` (``records.answers``) and the optional sections'
  ``HarmonisationRecord``, ``LongitudinalRecord``, ``NormativeRecord`` and ``VoxelwiseRecord``
  (also ``voxelwise.json``);
- ``DoneMarker`` and ``Provenance``: a cohort's bookkeeping and what the report reads.

Writers build them, readers (the report, the group level) use their attributes: there is no
dict with guessed keys between layers. ``SCHEMA_VERSION`` is written into every file record.
"""

from qsmiron.records.base import SCHEMA_VERSION, Record, StepInfo, jsonable, recorded_step, utc_now

_LAZY = {
    "Acquisition": "acquisition", "ReadoutInfo": "acquisition", "ReconInputs": "recon", "ReconRecord": "recon",
    "InversionRecord": "recon",
    "RegionsRecord": "regions", "AtlasInfo": "regions", "RegistrationInfo": "regions",
    "RegistrationQuality": "regions", "MeasurementInfo": "regions", "RegionsInputs": "regions",
    "ReferenceRegion": "regions", "MeasureInfo": "regions",
    "SignCheckInfo": "regions", "R2starInfo": "relaxometry", "ChiSeparationInfo": "relaxometry", "MapUnits": "recon",
    "AnalysisSettings": "study", "StatisticsMethods": "study",
    "Exclusion": "study", "StudyRecord": "study", "ParticipantCounts": "study", "Curve": "study",
    "ColumnInfo": "study", "StudyAnswers": "answers", "Estimate": "answers", "AucEstimate": "answers",
    "GroupDifferenceAnswer": "answers", "AssociationAnswer": "answers", "RelapseAnswer": "answers",
    "AssociationMatrix": "answers",
    "DoneMarker": "cohort", "MarkerFile": "cohort", "Provenance": "cohort", "ScanRecords": "cohort", "SubjectProblem": "cohort",
    "PipelineSummary": "cohort",
    "HarmonisationRecord": "extensions", "SiteEffect": "extensions", "LongitudinalRecord": "extensions",
    "LongitudinalTerm": "extensions", "NormativeRecord": "extensions", "NormativeSession": "extensions",
    "NormativeOutlier": "extensions", "VoxelwiseRecord": "extensions", "VoxelwiseContrast": "extensions",
    "VoxelwiseCluster": "extensions", "QcMeasure": "qc", "ScanQc": "qc",
}
"""Record classes imported on first use: they depend on the settings models, which in turn
use ``StepInfo`` from ``base``."""

__all__ = ["SCHEMA_VERSION", "Record", "StepInfo", "jsonable", "recorded_step", "utc_now", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"qsmiron.records.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'qsmiron.records' has no attribute {name!r}")
