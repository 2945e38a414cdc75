"""The one tabular reader: CSV through pandas' C parser, ``.npz`` / ``.npy`` through NumPy, each
bounded before it loads.

CSV: the header is read on its own (duplicated names are refused, pandas would rename them),
every line is checked against ``MAX_LINE_BYTES`` in one binary pass, then pandas parses the
body into typed columns (no Python string per cell). Missing values (empty cells, ``NA``,
``NaN``, ... as pandas reads them), short or long rows are refused naming the column and line.
``.npz``: each array that will be loaded is checked from the zip directory and its ``.npy``
header (declared size, dtype, shape) before anything is decompressed.
"""

import csv
import os
import warnings
import zipfile

import numpy as np

from gpunn._compat import require

# A CSV line longer than this is refused before parsing (100k float columns are about 2 MB).
MAX_LINE_BYTES = 64 << 20
# A compressed .npz member may expand at most this many times its stored size (MNIST's pixels
# about 8x); beyond it, save with np.savez (uncompressed), which only MAX_LOAD_FRACTION bounds.
MAX_NPZ_RATIO = 100
# ... unless it is small anyway.
NPZ_SMALL_BYTES = 64 << 20
# The arrays of one file may claim at most this fraction of the machine's physical memory.
MAX_LOAD_FRACTION = 0.5
_BLOCK = 16 << 20
# Cells pandas reads as missing by default (its read_csv documentation's list). In feature
# columns they are missing values; in the target only where the other cells are numbers
# (a text column may hold a class called "None" or "NA").
NA_TEXT = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
           "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")


def read_table(path, target=None, require_target=True, text_target=False, columns=None):
    """Features and target from ``path``: ``.csv`` (header row), ``.npz`` or ``.npy``.

    Args:
        path: the file. CSV: one header row of column names. ``.npz``: arrays ``X`` and ``y``
            (or ``X`` alone). ``.npy``: a 2-D array.
        target: CSV: the target column's name (None: the last column, or none when
            ``require_target`` is False).
            ``.npy``: the target column's index (None: the last column; ``"none"``: none).
            ``.npz``: the name of the target array (default ``y``).
        require_target: False lets a CSV or .npz lack the ``target`` column (predicting).
        text_target: True keeps a CSV target as its cells' text as written (not numbers,
            not stripped), to compare with the text labels a model was trained on.
        columns: CSV: the feature columns to read (others, such as an id column, are not
            parsed), each refused by name if the file lacks it; None: every column.

    Returns:
        ``(X, y, features, target_name)``: float64 ``X``, ``y`` (numbers or strings, or None),
        the feature names, the target name.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"data: expected an existing file, got {path!r}")
    kind = os.path.splitext(path)[1].lower()
    if kind == ".csv":
        try:
            return _read_csv(path, target, require_target, text_target, columns)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: expected UTF-8 text, got byte 0x{exc.object[exc.start]:02x}"
                             f" at offset {exc.start} of a read block ({exc.reason}); "
                             "re-save the file as UTF-8") from None
    if kind == ".npz":
        return _read_npz(path, target, require_target)
    if kind == ".npy":
        with open(path, "rb") as file:
            _check_npy_header(file, os.path.getsize(path), path)
        return _split_npy(np.load(path, allow_pickle=False), path, target)
    raise ValueError(f"data: expected a .csv, .npz or .npy file, got {path!r}")


def _memory_bound():
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * MAX_LOAD_FRACTION)
    except (AttributeError, ValueError, OSError):  # no sysconf: no machine-wide bound
        return None


def _check_npy_header(file, stored, label):
    """Check an ``.npy`` stream's dtype and shape against the ``stored`` bytes that follow."""
    try:
        version = np.lib.format.read_magic(file)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
            else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(file)
    except ValueError as exc:
        raise ValueError(f"{label}: expected a NumPy array, got an unreadable header ({exc})") \
            from None
    if dtype.hasobject:
        raise ValueError(f"{label}: expected a numeric array, got dtype {dtype} (objects)")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    left = stored - file.tell()
    if claimed > left:
        raise ValueError(f"{label}: its header claims {dtype} {shape} ({claimed} bytes), but "
                         f"only {left} bytes follow it; the file is truncated or forged")
    bound = _memory_bound()
    if bound is not None and claimed > bound:
        raise ValueError(f"{label}: {dtype} {shape} needs {claimed} bytes, more than "
                         f"{MAX_LOAD_FRACTION:g} of this machine's memory ({bound} bytes)")
    return claimed


def _check_npz(path, names):
    """Refuse before decompressing: members ``names`` whose declared or claimed size is out of
    bounds (zipfile stops reading a member at its declared ``file_size``)."""
    total, bound = 0, _memory_bound()
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        for name in names:
            info = members.get(f"{name}.npy")
            if info is None:
                continue
            label = f"{path}: array {name!r}"
            limit = max(NPZ_SMALL_BYTES, MAX_NPZ_RATIO * info.compress_size)
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > limit:
                raise ValueError(f"{label} would decompress from {info.compress_size} to "
                                 f"{info.file_size} bytes, more than {MAX_NPZ_RATIO}x; save "
                                 "it with np.savez (uncompressed) if it is genuine")
            with archive.open(info) as member:
                total += _check_npy_header(member, info.file_size, label)
    if bound is not None and total > bound:
        raise ValueError(f"{path}: its arrays need {total} bytes, more than "
                         f"{MAX_LOAD_FRACTION:g} of this machine's memory ({bound} bytes)")


def _read_npz(path, target, require_target):
    name = target or "y"
    try:
        _check_npz(path, ["X", name])
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: expected a .npz (zip) archive, got {exc}") from None
    with np.load(path, allow_pickle=False) as npz:
        if "X" not in npz.files:
            raise ValueError(f"{path}: expected an array named X, got {npz.files}")
        y = npz[name] if name in npz.files else None
        if y is None and require_target:
            raise ValueError(f"{path}: expected a target array named {name!r} (--target "
                             f"names another), got the arrays {npz.files}")
        X = _numeric(npz["X"], path)
    return X, y, [f"x{i}" for i in range(X.shape[1])], name


def _numeric(X, path):
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: expected a 2-D numeric array X, got {X.dtype} {X.shape}")
    return X.astype(np.float64)


def _split_npy(array, path, target):
    array = _numeric(array, path)
    if isinstance(target, str) and target.lower() == "none":
        return array, None, [f"x{i}" for i in range(array.shape[1])], None
    try:
        column = array.shape[1] - 1 if target is None else int(target)
    except ValueError:
        raise ValueError(f"--target: expected a column index for a .npy file, "
                         f"got {target!r}") from None
    if not -array.shape[1] <= column < array.shape[1]:
        raise ValueError(f"--target: expected a column index below {array.shape[1]}, "
                         f"got {column}")
    column %= array.shape[1]
    X = np.delete(array, column, axis=1)
    return X, array[:, column], [f"x{i}" for i in range(X.shape[1])], str(column)


def _check_lines(path):
    """Refuse a line longer than ``MAX_LINE_BYTES`` (one pass over the bytes, in blocks)."""
    start, line, offset = 0, 1, 0  # the current line's first byte and number; bytes read
    with open(path, "rb") as file:
        while block := file.read(_BLOCK):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10) + offset
            if len(ends):
                long = np.flatnonzero(np.diff(ends, prepend=start) > MAX_LINE_BYTES)
                if len(long):
                    _long_line(path, line + int(long[0]))
                line, start = line + len(ends), int(ends[-1]) + 1
            offset += len(block)
            if offset - start > MAX_LINE_BYTES:
                _long_line(path, line)


def _long_line(path, line):
    raise ValueError(f"{path}: line {line} is longer than {MAX_LINE_BYTES} bytes (the limit "
                     "on one CSV line); is this a CSV file?")


def _read_csv(path, target, require_target, text_target, columns=None):
    pd = require("pandas", "data", "reading CSV files")
    _check_lines(path)
    header = _read_header(path)
    if target is None and require_target:
        target = header[-1]
    if target is not None and target not in set(header):
        if require_target:
            raise ValueError(f"--target: expected a column of {path} {header}, "
                             f"got {target!r}")
        target = None
    use = None
    if columns is not None:
        index = {name: j for j, name in enumerate(header)}  # a dict: 100k columns, not 100k^2
        missing = [name for name in columns if name not in index]
        if missing:
            shown = ", ".join(repr(name[:60]) for name in missing[:5])
            raise ValueError(f"{path}: expected the model's {len(columns)} feature columns, "
                             f"missing {len(missing)}: {shown}"
                             f"{', ...' if len(missing) > 5 else ''}")
        use = sorted({index[name] for name in columns} | (
            set() if target is None else {index[target]}))
    frame = _parse_body(pd, path, header, target, use)
    if len(frame) < 1:
        raise ValueError(f"{path}: expected a header row and at least one data row, "
                         "got 1 rows")
    return _columns(pd, path, frame, header, target, text_target, require_target)


def _read_header(path):
    """The first row's names, stripped; duplicated names refused (pandas would rename them)."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        try:
            header = [name.strip() for name in next(csv.reader([file.readline()]), [])]
        except csv.Error as exc:
            raise ValueError(f"{path}: expected a CSV header row, got {exc}") from None
    if not header:
        raise ValueError(f"{path}: expected a header row and at least one data row, got 0 rows")
    seen, duplicated = set(), []
    for name in header:
        if name in seen and name not in duplicated:
            duplicated.append(name)
        seen.add(name)
    if duplicated:
        raise ValueError(f"{path}: expected distinct column names, got {duplicated} more than "
                         "once")
    return header


def _parse_body(pd, path, header, target, use=None):
    """The rows under the header as a DataFrame, one typed column per header name (the
    ``target`` column as text: :func:`_target` decides what it holds)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, header=None, skiprows=1, names=range(len(header)),
                               dtype=None if target is None else {header.index(target): str},
                               usecols=use, index_col=False, skip_blank_lines=False,
                               encoding="utf-8-sig", engine="c", low_memory=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise ValueError(f"{path}: expected {len(header)} fields per row as in the header, "
                         f"got another count ({str(exc).strip()})") from None
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _columns(pd, path, frame, header, target, text_target=False, require_target=True):
    """``(X, y, features, target)`` from the parsed ``frame``; missing or non-numeric cells
    refused naming the column and line (rows are numbered from 2, the header being line 1).
    Without ``require_target`` a target with missing cells is no target (``y`` None)."""
    position = None if target is None else header.index(target)
    raw = None if position is None else frame.pop(position)
    if raw is not None and raw.isna().any():  # NA text among the labels: read them as written
        raw = _target_text(pd, path, len(header), position)
    keep = list(frame.columns)  # the columns read (the target's popped)
    for j, dtype in zip(keep, frame.dtypes):
        if dtype.kind not in "iuf":
            _not_numeric(pd, path, header[j], frame[j])
    X = frame.to_numpy(np.float64) if keep else np.empty((len(frame), 0))
    bad = ~np.isfinite(X)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        if np.isnan(X[row, column]):
            _missing(path, header[keep[column]], row)
        raise ValueError(f"{path}: expected finite numbers in feature column "
                         f"{header[keep[column]]!r}, got {float(X[row, column])!r} on line "
                         f"{row + 2}")
    features = [header[j] for j in keep]
    if raw is None:
        return X, None, features, target
    missing = np.flatnonzero(raw.isna().to_numpy() | (raw.str.strip() == "").to_numpy())
    try:
        if len(missing):
            _missing(path, target, missing[0])
        return X, _target(pd, path, raw, target, text_target), features, target
    except _Missing:
        if require_target:
            raise
        return X, None, features, target  # rows to predict, some unlabelled: no score


def _target_text(pd, path, n_columns, position):
    """The target column alone, each cell as written (pandas' NA text too; a short row's
    missing cell NaN). Read again only where the first pass found NA in it: a per-column NA
    setting for the whole file cost about 16 kB per column."""
    return pd.read_csv(path, header=None, skiprows=1, names=range(n_columns),
                       usecols=[position], dtype=str, keep_default_na=False, index_col=False,
                       skip_blank_lines=False, encoding="utf-8-sig", engine="c")[position]


def _target(pd, path, raw, name, text=False):
    """The target column, read as text, as numbers or as labels without merging any two cells
    that the file writes differently.

    Numbers when every cell is a finite number and distinct cells are distinct numbers
    (``7``, ``8``; integers stay exact ``int64``/``uint64``, and an integer past their range,
    which would be a rounded float, keeps its text); otherwise the cells' text, stripped of
    surrounding blanks unless that too would merge two labels (``" a"`` and ``"a"``). So
    ``007`` and ``7``, ``1e3`` and ``1000``, or two integers past 2**53 stay two classes;
    :func:`gpunn.tabular.infer_task` still reads such a column as numbers where they make a
    regression target. Cells in :data:`NA_TEXT` among numbers are refused as missing; among
    text they are labels. ``text``: the cells' text as written, in any case.
    """
    na = raw.str.strip().isin(NA_TEXT).to_numpy()
    if na.any() and pd.to_numeric(raw[~na], errors="coerce").notna().all():
        _missing(path, name, np.flatnonzero(na)[0])  # numbers and NA: a missing number
    stripped = raw.str.strip()
    if text:
        return np.array(raw.tolist(), dtype=object)
    distinct = raw.nunique()
    numbers = pd.to_numeric(raw, errors="coerce")
    values = numbers.to_numpy(np.float64)
    if numbers.notna().all() and numbers.nunique() == distinct and np.isfinite(values).all() \
            and not (numbers.dtype.kind == "f" and _rounded_integers(raw, values)):
        return numbers.to_numpy()
    parsed = numbers.notna().to_numpy()
    if parsed.any() and not parsed.all() and (values[parsed] != np.round(values[parsed])).any():
        row = int(np.flatnonzero(~parsed)[0])  # fractions are no labels: a stray cell
        raise ValueError(f"{path}: column {name!r} holds numbers such as "
                         f"{raw[parsed].iloc[0]!r} and text {raw.iloc[row]!r} on line "
                         f"{row + 2}; write a missing value as an empty cell or NA, or labels "
                         "as text only")
    cells = stripped if stripped.nunique() == distinct else raw
    return np.array(cells.tolist(), dtype=object)  # not <U(longest): one long label x rows


def _rounded_integers(raw, values):
    """Whether an integer cell became a float64 that is not its value (past int64's range,
    where pandas gives floats: ``18446744073709551617`` reads as ...616)."""
    big = np.abs(values) >= 2.0 ** 53  # below it every integer is a float64
    if not big.any():
        return False
    cells, floats = raw[big], values[big]
    integer = cells.str.fullmatch(r"\s*[+-]?\d+\s*").to_numpy(bool)
    return any(int(cell) != int(value) for cell, value in zip(cells[integer], floats[integer]))


class _Missing(ValueError):
    """A missing value (a ValueError to the caller)."""


def _missing(path, name, row):
    raise _Missing(f"{path}: expected a value in column {name!r}, got a missing one (empty, "
                     f"NA, NaN, or a short row) on line {row + 2}")


def _not_numeric(pd, path, name, cells):
    values = pd.to_numeric(cells, errors="coerce").to_numpy(np.float64)
    rows = np.flatnonzero(np.isnan(values)) if cells.dtype.kind != "b" else []
    row = int(rows[0]) if len(rows) else 0
    if cells.isna().iloc[row]:
        _missing(path, name, row)
    raise ValueError(f"{path}: expected numbers in feature column {name!r}, got "
                     f"{str(cells.iloc[row])!r} on line {row + 2} (choose the target with "
                     "--target; encode categories as numbers)")
