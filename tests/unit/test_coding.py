"""The group coding (pylmer.data.coding): one level order, one missing-value policy,
immutable, extended explicitly for new data.  No R needed."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from pylmer.data.coding import GroupCoding, label
from pylmer.errors import DataError


def test_labels_are_r_levels_of_the_values():
    assert [label(v) for v in (3, np.int64(2**40), 1.0, 2.5, True, "a")] == [
        "3",
        str(2**40),
        "1",
        "2.5",
        "TRUE",
        "a",
    ]


def test_level_order_sorted_by_value_categoricals_keep_theirs():
    frame = pd.DataFrame(
        {
            "num": [10, 2, 10, 1],
            "text": ["b", "a", "c", "a"],
            "cat": pd.Categorical(["x", "y", "x", "y"], categories=["y", "x"]),
        }
    )
    coding = GroupCoding.from_frame(frame)
    assert coding.levels == {"num": ("1", "2", "10"), "text": ("a", "b", "c"), "cat": ("y", "x")}
    encoded = coding.encode(frame)
    assert list(encoded["num"].cat.categories) == ["1", "2", "10"]
    assert encoded["num"].tolist() == ["10", "2", "10", "1"]


def test_integral_floats_and_integers_are_one_group():
    coding = GroupCoding.from_frame(pd.DataFrame({"g": [1.0, 2.0]}))
    assert coding.encode(pd.DataFrame({"g": [np.int64(1), 2]}))["g"].tolist() == ["1", "2"]


def test_missing_values_stay_missing_and_are_no_level():
    frame = pd.DataFrame({"g": [1.0, np.nan, 2.0]})
    coding = GroupCoding.from_frame(frame)
    assert coding.levels["g"] == ("1", "2")
    assert coding.encode(frame)["g"].isna().tolist() == [False, True, False]


def test_immutable_and_extended_explicitly():
    coding = GroupCoding.from_frame(pd.DataFrame({"g": ["b", "a"]}))
    new = pd.DataFrame({"g": ["c", "a", None]})
    with pytest.raises(DataError, match=r"'g'.*'c'.*extend"):
        coding.encode(new)
    with pytest.raises(TypeError):
        coding.values["g"]["c"] = "c"  # read-only view
    extended = coding.extend(new)
    assert extended.levels["g"] == ("a", "b", "c")  # known first, in their order
    assert coding.levels["g"] == ("a", "b")  # the original is unchanged
    assert coding.unseen(new) == {"g": ["c"]}
    assert extended.encode(new)["g"].tolist()[:2] == ["c", "a"]


def test_values_with_the_same_label_are_refused_in_one_frame():
    with pytest.raises(DataError, match="same level '1'"):
        GroupCoding.from_frame(pd.DataFrame({"g": pd.Series([1, "1"], dtype=object)}))


def test_new_data_with_the_labels_of_known_values_is_the_same_group():
    coding = GroupCoding.from_frame(pd.DataFrame({"g": [308, 309]}))
    text = pd.DataFrame({"g": ["308", "new"]})  # ids read as text from a CSV
    extended = coding.extend(text)
    assert extended.values["g"]["308"] == 308 and extended.levels["g"] == ("308", "309", "new")
    assert extended.encode(text)["g"].tolist() == ["308", "new"]


def test_decode_to_original_values_and_nested_factors():
    frame = pd.DataFrame({"a": [2**40, 5], "b": ["x", "y"]})
    coding = GroupCoding.from_frame(frame)
    assert list(coding.decode("a", pd.Index(["5", str(2**40)]))) == [5, 2**40]
    nested = coding.decode("b:a", ["x:5", "y:" + str(2**40)], ["b", "a"])
    assert isinstance(nested, pd.MultiIndex) and ("x", 5) in nested
    assert list(coding.decode("unknown", ["u"])) == ["u"]


def test_pickles():
    coding = GroupCoding.from_frame(pd.DataFrame({"g": [3, 1]}))
    again = pickle.loads(pickle.dumps(coding))
    assert again.levels == coding.levels and again.values["g"]["3"] == 3
