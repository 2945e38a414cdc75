"""The tabular reader: CSV through pandas, bounded .npz / .npy (issue 19 item 6)."""

import io
import re
import zipfile

import numpy as np
import pytest

from gpunn import tabular_read
from gpunn.tabular_read import read_table

pytest.importorskip("pandas")


def write(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_values_match_python_float_bit_for_bit(tmp_path):
    """An independent reference: Python's correctly rounded float() of every cell."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal((300, 4)) * 10.0 ** rng.integers(-300, 300, (300, 4))
    cells = [[f"{v:.17g}" for v in row] for row in values]
    text = "a,b,c,t\n" + "".join(",".join(row) + "\n" for row in cells)
    X, y, features, target = read_table(write(tmp_path, text))
    expected = np.array([[float(c) for c in row] for row in cells])
    np.testing.assert_array_equal(X, expected[:, :3])
    np.testing.assert_array_equal(y, expected[:, 3])
    assert features == ["a", "b", "c"] and target == "t"


def test_text_labels_and_column_choice_as_before(tmp_path):
    path = write(tmp_path, " x , label ,z\n1, cat ,2\n3,dog,4\n")
    numbers = write(tmp_path, " x , label ,z\n1, 7 ,2\n3,8,4\n", "n.csv")
    X, y, features, target = read_table(path, "label")
    assert features == ["x", "z"] and target == "label"
    np.testing.assert_array_equal(X, [[1.0, 2.0], [3.0, 4.0]])
    assert y.tolist() == ["cat", "dog"]
    with pytest.raises(ValueError, match="feature column 'label', got ' cat ' on line 2"):
        read_table(path, "nope", require_target=False)
    X, y, features, target = read_table(numbers, "nope", require_target=False)
    assert y is None and target is None and features == ["x", "label", "z"]


@pytest.mark.parametrize("text, match", [
    ("a,b,a,t\n1,2,3,4\n", r"distinct column names, got \['a'\]"),
    ("a,b,t\n1,2,3\n4,5,NA\n", r"column 't'.*missing.*line 3"),
    ("a,b,t\n1,2,3\n4,,5\n", r"column 'b'.*missing.*line 3"),
    ("a,b,t\n1,NaN,3\n4,5,6\n", r"column 'b'.*missing.*line 2"),
    ("a,b,t\n1,2,3\n4,5\n", r"column 't'.*missing.*line 3"),
    ("a,b,t\n1,2,3\n4,5,6,7\n", r"expected 3 fields per row"),
    ("a,b,t\n1,2,3,9\n4,5,6\n", r"expected 3 fields per row"),
    ("a,b,t\n1,oops,3\n", r"expected numbers in feature column 'b', got 'oops' on line 2"),
    ("a,b,t\n1,inf,3\n", r"finite numbers in feature column 'b', got inf on line 2"),
    ("a,b,t\n", r"at least one data row"),
    ("", r"at least one data row"),
], ids=["duplicate", "na-target", "empty-feature", "nan-feature", "short-row", "long-row",
        "long-first-row", "text-feature", "inf", "header-only", "empty"])
def test_bad_csv_is_refused_naming_column_and_line(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_table(write(tmp_path, text), "t")


def test_a_numeric_target_with_one_na_is_not_a_classifier(tmp_path):
    """The issue's case: one NA cell turned a regression target into 297 classes."""
    rows = "".join(f"{i},{i * 0.37}\n" for i in range(300)) + "5,NA\n"
    with pytest.raises(ValueError, match=r"column 'y'.*missing.*line 302"):
        read_table(write(tmp_path, "x,y\n" + rows), "y")


def test_an_overlong_line_is_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular_read, "MAX_LINE_BYTES", 100_000)
    monkeypatch.setattr(tabular_read, "_BLOCK", 65_536)  # the line spans blocks
    text = "a,t\n1,2\n" + "9" * 200_000 + ",1\n3,4\n"
    with pytest.raises(ValueError, match=r"line 3 is longer than 100000 bytes"):
        read_table(write(tmp_path, text), "t")
    text = "a,t\n" + "1,2\n" * 40_000  # many short lines across blocks: fine
    assert read_table(write(tmp_path, text), "t")[0].shape == (40_000, 1)


def test_many_columns_read_in_order(tmp_path):
    """A wide file keeps every column, in order (the old reader looked each name up in the
    header, quadratic in the columns; its cost is measured in benchmarks/tabular_read.py, not
    timed here: timings belong in benchmarks)."""
    names = [f"c{i}" for i in range(20_000)]
    path = write(tmp_path, ",".join(names) + "\n" + ",".join(map(str, range(20_000))) + "\n")
    X, _, features, _ = read_table(path, "c0")
    assert features == names[1:]
    np.testing.assert_array_equal(X, np.arange(1, 20_000, dtype=X.dtype)[None, :])


def forged_npy(shape, data=b"\0" * 16):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def test_npz_bombs_and_forged_headers_are_refused_before_loading(tmp_path):
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, X=np.zeros((10_000, 1_000)))  # 80 MB in about 80 kB
    with pytest.raises(ValueError, match=r"array 'X' would decompress from \d+ to 80000\d+"):
        read_table(bomb)
    forged = tmp_path / "forged.npz"
    with zipfile.ZipFile(forged, "w") as archive:
        archive.writestr("X.npy", forged_npy((10**6, 10**6)))
    with pytest.raises(ValueError, match=r"array 'X': its header claims .* truncated or forged"):
        read_table(forged)
    forged_file = tmp_path / "forged.npy"
    forged_file.write_bytes(forged_npy((10**6, 10**6)))
    with pytest.raises(ValueError, match=r"forged.npy: its header claims"):
        read_table(forged_file)
    genuine = tmp_path / "genuine.npz"
    np.savez(genuine, X=np.zeros((10_000, 1_000)), y=np.zeros(10_000))  # stored: no ratio bound
    X, y, _, _ = read_table(genuine)
    assert X.shape == (10_000, 1_000) and y.shape == (10_000,)


def test_one_long_text_label_costs_its_own_size_not_rows_times_it(tmp_path):
    """Text labels are Python strings (object array): a fixed-width ``<U`` array would give
    every row the longest label's width (a 200 kB label on 20,000 rows: 14.9 GiB)."""
    path = tmp_path / "labels.csv"
    long_label = "z" * 200_000
    path.write_text("a,y\n" + "".join(f"{i},{'cd'[i % 2]}\n" for i in range(20_000))
                    + f"1,{long_label}\n")
    _, y, _, _ = read_table(path)
    assert y.dtype == object and y[-1] == long_label and y[:2].tolist() == ["c", "d"]


def test_an_npz_without_its_target_array_names_it(tmp_path):
    path = tmp_path / "features.npz"
    np.savez(path, X=np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"expected a target array named 'y' \(--target names "
                                         r"another\), got the arrays \['X'\]"):
        read_table(path)
    X, y, _, _ = read_table(path, require_target=False)  # predicting needs no target
    assert X.shape == (4, 2) and y is None


@pytest.mark.parametrize("cells, expected", [
    (["007", "7", "8"], ["007", "7", "8"]),  # two texts of one number: labels, as written
    (["1e3", "1000", "2"], ["1e3", "1000", "2"]),
    (["9007199254740993", "9007199254740992"], [9007199254740993, 9007199254740992]),
    (["18446744073709551617", "18446744073709551616"],  # past int64: floats would merge
     ["18446744073709551617", "18446744073709551616"]),
    (["18446744073709551617", "1"], ["18446744073709551617", "1"]),  # float64 would round
    (["-9223372036854775809", "1"], ["-9223372036854775809", "1"]),
    (["18446744073709551615", "1"], [18446744073709551615, 1]),  # uint64: exact
    ([" a", "a", "b"], [" a", "a", "b"]),  # stripping would merge " a" and "a"
    ([" a ", "b "], ["a", "b"]),  # ... here it merges nothing
    (["7", " 8 ", "9"], [7, 8, 9]),
    (["0.5", "2.25"], [0.5, 2.25]),
    (["inf", "1"], ["inf", "1"]),  # not finite: not a number target
], ids=["leading-zero", "exponent", "past-2**53", "past-int64", "past-uint64",
        "below-int64", "uint64", "blank-distinguishes",
        "blank-pads", "padded-ints", "floats", "inf"])
def test_a_target_keeps_every_label_the_file_distinguishes(tmp_path, cells, expected):
    """Distinct cells stay distinct labels; numbers only where that merges nothing."""
    text = "x,t\n" + "".join(f"{i},{cell}\n" for i, cell in enumerate(cells))
    y = read_table(write(tmp_path, text), "t")[1]
    assert y.tolist() == expected
    assert len(set(y.tolist())) == len(set(cells))
    if all(isinstance(v, int) for v in expected):
        assert y.dtype.kind in "iu"  # exact, not through float64
    assert read_table(write(tmp_path, text), "t", text_target=True)[1].tolist() == cells


def test_a_blank_target_cell_is_refused_naming_the_line(tmp_path):
    with pytest.raises(ValueError, match=r"column 't', got a missing one .* on line 3"):
        read_table(write(tmp_path, "x,t\n1,a\n2,  \n"), "t")


@pytest.mark.parametrize("na", ["None", "NA", "null", "n/a", "#N/A", "nan"])
def test_na_text_is_a_label_among_labels_and_missing_among_numbers(tmp_path, na):
    """A class may be called "None" or "NA"; among numbers the same cell is a missing value
    (the issue's one-NA numeric target must not become a classifier)."""
    y = read_table(write(tmp_path, f"x,t\n1,a\n2,{na}\n3,b\n"), "t")[1]
    assert y.tolist() == ["a", na, "b"]
    with pytest.raises(ValueError, match=r"column 't', got a missing one .* on line 3"):
        read_table(write(tmp_path, f"x,t\n1,0.5\n2,{na}\n3,7\n"), "t")
    # the features' NA text is still missing
    with pytest.raises(ValueError, match=r"column 'x', got a missing one .* on line 3"):
        read_table(write(tmp_path, f"x,t\n1,a\n{na},b\n3,b\n"), "t")


def test_predicting_rows_whose_target_is_blank_reads_no_target(tmp_path):
    """Unlabelled rows to predict (the target column there, some cells empty): read without
    a target (no score), not refused; training still refuses them."""
    path = write(tmp_path, "x,t\n1,a\n2,\n3,b\n")
    X, y, features, target = read_table(path, "t", require_target=False)
    assert y is None and X.tolist() == [[1.0], [2.0], [3.0]] and features == ["x"]
    with pytest.raises(ValueError, match=r"column 't', got a missing one .* on line 3"):
        read_table(path, "t")


def test_predicting_rows_whose_target_says_na_reads_no_target(tmp_path):
    """R's write.csv marks unlabelled rows NA: predict reads no target from such a column
    (numbers and NA), and a column all NA, rather than refusing the rows."""
    for text in ("x,t\n1,0.5\n2,NA\n3,7\n", "x,t\n1,NA\n2,NA\n"):
        X, y, _, _ = read_table(write(tmp_path, text), "t", require_target=False)
        assert y is None and len(X) == text.count("\n") - 1


@pytest.mark.parametrize("junk", ["?", "NAN", "none", "missing"])
def test_a_stray_text_cell_among_fractions_is_refused_not_read_as_labels(tmp_path, junk):
    """400 float targets and one '?': a regression target with a bad cell, not a 390-class
    classifier."""
    rows = [f"{i},{i * 0.37:.2f}\n" for i in range(400)]
    text = "x,y\n" + "".join(rows[:40]) + f"5,{junk}\n" + "".join(rows[40:])
    with pytest.raises(ValueError, match=rf"column 'y' holds numbers such as '0.00' and text "
                                         rf"'{re.escape(junk)}' on line 42; write a missing "
                                         r"value"):
        read_table(write(tmp_path, text), "y")


def test_the_na_reading_of_the_target_costs_no_memory_per_column(tmp_path):
    """The target's NA text is read by a second pass over that column alone; a per-column NA
    setting for the whole file cost about 16 kB per column (20k columns: 320 MB)."""
    import tracemalloc

    columns = 20_000
    header = ",".join(f"c{j}" for j in range(columns)) + ",t\n"
    row = ",".join("1" for _ in range(columns))
    path = write(tmp_path, header + row + ",None\n" + row + ",a\n")
    tracemalloc.start()
    X, y, _, _ = read_table(path, "t")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert y.tolist() == ["None", "a"] and X.shape == (2, columns)
    assert peak < 100 << 20, peak
