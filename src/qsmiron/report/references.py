"""The publications of the statistical methods the study ran, and the consensus checklist.

Which references apply is read from the results (a table with rows, a model named in a row,
an optional section's record), so the methods section cites what ran and nothing else. The
reconstruction and registration methods cite themselves (``qsmiron.methods.Method``).
"""

from __future__ import annotations

from typing import Any

FDR = "Benjamini Y, Hochberg Y. J R Stat Soc B 1995;57:289-300, doi:10.1111/j.2517-6161.1995.tb02031.x"
WELCH = "Welch BL. Biometrika 1947;34:28-35, doi:10.1093/biomet/34.1-2.28"
MANN_WHITNEY = "Mann HB, Whitney DR. Ann Math Stat 1947;18:50-60, doi:10.1214/aoms/1177730491"
SHAPIRO_WILK = "Shapiro SS, Wilk MB. Biometrika 1965;52:591-611, doi:10.1093/biomet/52.3-4.591"
BONETT_WRIGHT = "Bonett DG, Wright TA. Psychometrika 2000;65:23-28, doi:10.1007/BF02294183"
FIRTH = "Firth D. Biometrika 1993;80:27-38, doi:10.1093/biomet/80.1.27"
DELONG = "DeLong ER, DeLong DM, Clarke-Pearson DL. Biometrics 1988;44:837-845, doi:10.2307/2531595"
YOUDEN = "Youden WJ. Cancer 1950;3:32-35, doi:10.1002/1097-0142(1950)3:1<32::AID-CNCR2820030106>3.0.CO;2-3"
HARRELL = ("Harrell FE, Lee KL, Mark DB. Stat Med 1996;15:361-387, "
           "doi:10.1002/(SICI)1097-0258(19960229)15:4<361::AID-SIM168>3.0.CO;2-4")
KAPLAN_MEIER = "Kaplan EL, Meier P. J Am Stat Assoc 1958;53:457-481, doi:10.1080/01621459.1958.10501452"
COX = "Cox DR. J R Stat Soc B 1972;34:187-220, doi:10.1111/j.2517-6161.1972.tb00899.x"
HSIEH = ("Hsieh FY, Bloch DA, Larsen MD. Stat Med 1998;17:1623-1634, "
         "doi:10.1002/(SICI)1097-0258(19980730)17:14<1623::AID-SIM871>3.0.CO;2-S")
CAMERON_TRIVEDI = "Cameron AC, Trivedi PK. J Econom 1990;46:347-364, doi:10.1016/0304-4076(90)90014-K"
COMBAT = "Johnson WE, Li C, Rabinovic A. Biostatistics 2007;8:118-127, doi:10.1093/biostatistics/kxj037"
COMBAT_MRI = "Fortin JP, et al. NeuroImage 2018;167:104-120, doi:10.1016/j.neuroimage.2017.11.024"
LME4 = "Bates D, Maechler M, Bolker B, Walker S. J Stat Softw 2015;67(1):1-48, doi:10.18637/jss.v067.i01"
CRAWFORD_HOWELL = "Crawford JR, Howell DC. Clin Neuropsychol 1998;12:482-486, doi:10.1076/clin.12.4.482.7241"
TFCE = "Smith SM, Nichols TE. NeuroImage 2009;44:83-98, doi:10.1016/j.neuroimage.2008.03.061"
PERMUTATION = "Winkler AM, et al. NeuroImage 2014;92:381-397, doi:10.1016/j.neuroimage.2014.01.060"
CONSENSUS = ("QSM Consensus Organization Committee. Magn Reson Med 2024;91:1834-1862, doi:10.1002/mrm.30006")
CIT168 = "Pauli WM, Nili AN, Tyszka JM. Sci Data 2018;5:180063, doi:10.1038/sdata.2018.63"


def _has_rows(frame: Any) -> bool:
    return frame is not None and not frame.empty


def statistics_references(results: Any) -> list[str]:
    """The references of the statistics ``results`` hold rows of, in the order the methods name them."""
    found = []
    if results is None:
        return found
    if _has_rows(results.table1):
        found += [WELCH, MANN_WHITNEY, SHAPIRO_WILK]
    if _has_rows(results.group_comparison):
        found += [MANN_WHITNEY, FDR]
    if _has_rows(results.associations):
        found.append(BONETT_WRIGHT)
    relapse = results.relapse
    if _has_rows(relapse):
        models = set(relapse.get("logistic_model", []).dropna().astype(str)) if "logistic_model" in relapse else set()
        if any("firth" in m.lower() for m in models):
            found.append(FIRTH)
        if "auc" in relapse and relapse["auc"].notna().any():
            found += [DELONG, YOUDEN, HARRELL]
        if "hr" in relapse and relapse["hr"].notna().any():
            found += [COX, KAPLAN_MEIER]
        found.append(HSIEH)
    if _has_rows(results.relapse_counts):
        found.append(CAMERON_TRIVEDI)
    if results.harmonisation is not None:
        found += [COMBAT, COMBAT_MRI]
    if results.longitudinal is not None:
        found.append(LME4)
    if results.normative is not None:
        found.append(CRAWFORD_HOWELL)
    if results.voxelwise is not None:
        found += [TFCE, PERMUTATION]
    return list(dict.fromkeys(found))
