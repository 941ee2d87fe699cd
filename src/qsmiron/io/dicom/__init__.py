"""DICOM export to BIDS for multi-echo GRE: ``qsmiron convert``.

- ``headers``: every file's header read with pydicom (never the pixels);
- ``sorting``: patients, visits, series, and the multi-echo GRE acquisitions among them,
  with the reason for every series skipped;
- ``subjects``: subject and session labels (mapping file, PatientID, study dates), age, sex;
- ``dcm2niix``: pixel conversion by the dcm2niix binary of the ``dcm2niix`` PyPI package;
- ``phase``: phase in radians with the vendor scaling recorded;
- ``convert``: the whole conversion; ``participants``: the participants and sessions tables;
  ``report``: what was converted and skipped, and the printed summary.
"""

from qsmiron.io.dicom.convert import BIDS_VERSION, convert_dicom_to_bids
from qsmiron.io.dicom.dcm2niix import find_dcm2niix
from qsmiron.io.dicom.report import ConversionReport, ConvertedAcquisition
from qsmiron.io.dicom.subjects import read_mapping

__all__ = ["convert_dicom_to_bids", "ConversionReport", "ConvertedAcquisition", "find_dcm2niix", "read_mapping",
           "BIDS_VERSION"]
