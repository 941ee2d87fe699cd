"""Number formats of the report: the same value reads the same everywhere."""

import math

import numpy as np
import pandas as pd
import pytest

from qsmiron.report.formatting import (
    format_auto, format_count, format_interval, format_mean_sd, format_number, format_p,
    format_ppm, is_missing, is_significant,
)


@pytest.mark.parametrize("p, text", [(0.0004, "<0.001"), (0.001, "0.001"), (0.0123, "0.012"),
                                     (0.04999, "0.050"), (0.5, "0.500"), (1.0000001, "1.000"),
                                     (np.float32(0.2), "0.200"), (float("nan"), "n/a"), (None, "n/a")])
def test_p_values_print_as_journals_print_them(p, text):
    assert format_p(p) == text


def test_ppm_values_have_four_decimals_and_no_negative_zero():
    assert format_ppm(0.061234) == "0.0612"
    assert format_ppm(-0.00001) == "0.0000"
    assert format_ppm(-0.0213) == "-0.0213"
    assert format_ppm(0.1, decimals=3) == "0.100"
    assert format_ppm(pd.NA) == "n/a"


def test_intervals_and_mean_sd_use_the_same_rounding_as_their_parts():
    assert format_interval(0.4512, 0.2109, 0.9733) == "0.45 (0.21\u20130.97)"
    assert format_interval(-0.92, -1.571, -0.26) == "-0.92 (-1.57 to -0.26)"
    assert format_interval(0.45, float("nan"), float("nan")) == "0.45"
    assert format_interval(float("nan"), 0.1, 0.2) == "n/a"
    assert format_mean_sd(0.06123, 0.02011) == "0.0612 \u00b1 0.0201"
    assert format_mean_sd(0.06123, None) == "0.0612"


def test_numbers_counts_and_special_values():
    assert format_number(2.346, 2) == "2.35"
    assert format_number(-0.001, 2) == "0.00"
    assert format_number(12, 2) == "12"
    assert format_number(True) == "yes"
    assert format_number(math.inf) == "inf"
    assert format_number(2.5e7, 2) == "2.5e+07"
    assert format_count(12.0) == "12" and format_count(np.int64(3)) == "3"
    assert format_count(2.5) == "2.5"


@pytest.mark.parametrize("column, value, text", [
    ("p", 0.0002, "<0.001"), ("mwu_p", 0.03, "0.030"), ("p_fdr", 0.2, "0.200"),
    ("n_a", 12.0, "12"), ("n", 7, "7"), ("mean_b", 0.123456, "0.1235"),
    ("youden_threshold_ppm", 0.05, "0.0500"), ("statistic", 1.23456, "1.235"),
    ("test", "Welch t", "Welch t"), ("r", float("nan"), "n/a")])
def test_generic_columns_are_formatted_by_their_names(column, value, text):
    assert format_auto(column, value) == text


def test_missing_and_significance():
    assert is_missing(None) and is_missing(np.nan) and is_missing(pd.NA) and is_missing(pd.NaT)
    assert not is_missing(0.0) and not is_missing("x") and not is_missing([1, 2])
    assert is_significant(0.049) and not is_significant(0.05) and not is_significant(np.nan)
    assert is_significant(0.09, level=0.1)
