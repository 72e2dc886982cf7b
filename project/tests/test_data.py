"""The project's data loading: the wine data by default, a CSV or Parquet file when given."""

from __future__ import annotations

import pandas as pd
import pytest

from mlstack_demo.data import TARGET, DataError, load_data, split, write_table


def test_the_default_data_set_is_the_wine_data():
    features, target = load_data()
    assert features.shape == (178, 13)
    assert len(target) == 178 and set(target) == {0, 1, 2}
    assert TARGET not in features.columns


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_data_file_loads_as_features_and_labels_in_file_order(tmp_path, suffix):
    features, target = load_data()
    path = tmp_path / f"wine{suffix}"
    write_table(features.assign(**{TARGET: target}).iloc[::-1], path)
    loaded_features, loaded_target = load_data(path)
    pd.testing.assert_frame_equal(loaded_features, features.iloc[::-1].reset_index(drop=True))
    assert list(loaded_target) == list(target.iloc[::-1])


def test_a_file_without_labels_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "no_labels.csv"
    write_table(load_data()[0], path)
    with pytest.raises(DataError, match=f"no '{TARGET}' column"):
        load_data(path)


@pytest.mark.parametrize("name", ["wine.xlsx", "missing.csv"])
def test_an_unreadable_file_is_refused_with_the_reason(tmp_path, name):
    with pytest.raises(DataError, match=name):
        load_data(tmp_path / name)


def test_the_split_holds_out_the_share_asked_for_with_every_class():
    features, target = load_data()
    x_train, x_test, y_train, y_test = split(features, target, test_size=0.25, random_state=42)
    assert (len(x_train), len(x_test)) == (133, 45)
    assert set(y_test) == {0, 1, 2}
    # The same seed gives the same rows (evaluate.py finds a run's held-out rows this way)
    assert list(split(features, target, 0.25, 42)[1].index) == list(x_test.index)
