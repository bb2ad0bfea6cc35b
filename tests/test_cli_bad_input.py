"""Bad input to the ``pylmer`` command (issue 7): one ``pylmer: error:`` line on
stderr naming the column, term or level, the right exit status, no traceback; the R
session stays usable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _reliability import SLEEP, _na, assert_r_usable

from pylmer import (
    cli,
)
from pylmer.data.simulate import simulate_longitudinal


@pytest.fixture(scope="module", autouse=True)
def _r_started(r_session):
    """Every test here talks to R (see conftest.r_session)."""


# ---------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def csvs(tmp_path_factory, sleep) -> Path:
    """Small CSV files, good and bad, for the command-line table."""
    d = tmp_path_factory.mktemp("csv")
    good = sleep.assign(half=np.where(sleep["Days"] < 5, "early", "late"), label="x")
    good.to_csv(d / "sleep.csv", index=False)
    good.head(4).assign(half=["early", "middle", "late", "early"]).to_csv(
        d / "new_half.csv", index=False
    )
    good.head(3).drop(columns="Days").to_csv(d / "no_days.csv", index=False)
    good.head(0).to_csv(d / "empty.csv", index=False)
    good.assign(g="a").to_csv(d / "one_level.csv", index=False)
    good.assign(g=np.arange(180)).to_csv(d / "as_many_levels.csv", index=False)
    _na(good, "Reaction", np.nan).to_csv(d / "na.csv", index=False)
    good.rename(columns={"Reaction": "re act"}).to_csv(d / "space.csv", index=False)
    (d / "dup.csv").write_text("y,y,g\n1,2,a\n3,4,b\n5,6,a\n")
    long = simulate_longitudinal(n_subjects=20, n_times=6, seed=1)
    long = long[["individus", "x2_x5", "y_mixed_obs"]]
    long.to_csv(d / "long.csv", index=False)
    long.assign(y_mixed_obs="s").to_csv(d / "long_text_y.csv", index=False)
    _na(long, "individus", np.nan).to_csv(d / "long_na_group.csv", index=False)
    long.assign(individus=1).to_csv(d / "long_one_level.csv", index=False)
    return d


MM = ("--target", "y_mixed_obs", "--random", "(1 | individus)", "--max-iter", "3")

# id, argv (``{d}`` is the CSV folder), exit status, regex the error / warning line matches
CLI_CASES: list[Any] = [
    ("formula_syntax_error", ["fit", "{d}/sleep.csv", "Reaction ~ Days + (1 | Subject"], 1,
     r"error: cannot parse the formula 'Reaction ~ Days \+ \(1 \| Subject'"),
    ("no_random_effects_term", ["fit", "{d}/sleep.csv", "Reaction ~ Days"], 1,
     r"error: the formula 'Reaction ~ Days' has no random-effects term"),
    ("response_is_text", ["fit", "{d}/sleep.csv", "label ~ Days + (1 | Subject)"], 1,
     r"error: the response 'label' must be numeric"),
    ("missing_response_dropped_with_warning", ["fit", "{d}/na.csv", SLEEP, "--no-pvalues"], 0,
     r"warning: lme4 dropped 1 of 180 rows .*'Reaction': 1"),
    ("grouping_factor_with_one_level", ["fit", "{d}/one_level.csv", "Reaction ~ Days + (1|g)"], 1,
     r"error: R error: grouping factor 'g' has only 1 level \('a'\)"),
    ("grouping_factor_with_as_many_levels_as_rows",
     ["fit", "{d}/as_many_levels.csv", "Reaction ~ Days + (1|g)"], 1,
     r"error: R error: grouping factor 'g' has as many levels \(180\) as observations"),
    ("duplicate_header", ["fit", "{d}/dup.csv", "y ~ 1 + (1 | g)"], 1,
     r"error: .*dup\.csv has duplicate column names: 'y'"),
    ("empty_csv", ["fit", "{d}/empty.csv", SLEEP], 1,
     r"error: .*empty\.csv has no data rows \(columns: Reaction, Days, Subject"),
    ("name_with_space_not_quoted", ["fit", "{d}/space.csv", "re act ~ Days + (1 | Subject)"], 1,
     r"error: cannot parse the formula .*backticks, e\.g\. `re act`"),
    ("predict_unseen_fixed_level",
     ["predict", "{d}/sleep.csv", "Reaction ~ Days + half + (1 | Subject)",
      "--newdata", "{d}/new_half.csv"], 1,
     r"error: column 'half' of newdata has level\(s\) not seen in training: 'middle'"),
    ("predict_newdata_lacks_a_column",
     ["predict", "{d}/sleep.csv", SLEEP, "--newdata", "{d}/no_days.csv"], 1,
     r"error: newdata lacks column\(s\) the model uses: 'Days'"),
    ("mixedml_target_is_text", ["mixedml", "{d}/long_text_y.csv", *MM], 1,
     r"error: the target column 'y_mixed_obs' is not numeric"),
    ("mixedml_missing_group_dropped_with_warning", ["mixedml", "{d}/long_na_group.csv", *MM], 0,
     r"warning: dropping 1 of 120 rows with missing values \(missing per column: 'individus': 1\)"),
    ("mixedml_unbalanced_parentheses",
     ["mixedml", "{d}/long.csv", "--target", "y_mixed_obs", "--random", "(1 | individus"], 1,
     r"error: random effects '\(1 \| individus' has unbalanced parentheses"),
    pytest.param(
        "mixedml_grouping_factor_with_one_level", ["mixedml", "{d}/long_one_level.csv", *MM], 1,
        r"error: .*'individus'",
        id="mixedml_grouping_factor_with_one_level",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case_id", "argv", "status", "match"),
    [pytest.param(*c, id=c[0]) if type(c) is tuple else c for c in CLI_CASES],
)
def test_cli_bad_input(case_id, argv, status, match, csvs, tmp_path, capsys):
    args = [a.replace("{d}", str(csvs)) for a in argv]
    code = cli.main([*args, "--quiet", "--out", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert code == status, err
    assert "Traceback" not in err
    kind = "error" if status else "warning"
    lines = [ln for ln in err.splitlines() if ln.startswith(f"pylmer: {kind}:")]
    assert any(re.search(match, ln) for ln in lines), err
    if status:
        assert len([ln for ln in err.splitlines() if ln.startswith("pylmer: error:")]) == 1, err
    assert_r_usable()
