"""Read image CSVs in the Kaggle "digit-recognizer" layout (the MNIST DDPM system, docs/systems/mnist-ddpm.md).

Layout: a header row; an optional `label` column; columns `pixel0` ... `pixel{H*W-1}` in any order
(row-major pixels of a square, one-channel image); every cell an integer 0-255 (labels too). Blank
lines are skipped, as numpy and pandas do.

Reading takes a second pass only when needed: numpy's C `loadtxt` reads a valid file fast (60000 x 785
in about 1 s) and refuses any cell that is not a plain integer fitting uint8 (pandas' parser, by
contrast, reads "True" as 1 and "1e2" as 100). Its errors do not use our row/column/header wording,
so when it fails the file is scanned again with the csv module to name the first bad row and column
in a one-line `PipelineError`.
"""
from __future__ import annotations

import csv
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from ..core.errors import PipelineError
from ..core.files import atomic_path

LABEL = "label"
_PIXEL_NAME = re.compile(r"pixel(0|[1-9][0-9]*)", re.ASCII)
# The integer forms numpy's loadtxt accepts for uint8: ASCII digits, optional "+", surrounding space.
_INTEGER = re.compile(r"\s*([+-]?)([0-9]+)\s*")
_FLOAT = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
# A row of plain 0-255 integers: lets the error scan skip good rows without looking at each cell.
_BYTE = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_ROW = re.compile(rf"(?:{_BYTE},)*{_BYTE}", re.ASCII)


@dataclass(frozen=True)
class _Layout:
    """What the header says: column names in file order and where label and pixels are."""

    names: tuple[str, ...]
    label_col: int | None  # 0-based file position of `label`
    pixel_cols: tuple[int, ...]  # 0-based file positions of pixel0, pixel1, ... in pixel order
    side: int  # H == W


def read_pixel_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a digit-recognizer CSV -> (images uint8 (N, 1, H, W), labels int64 (N,) or None).

    Raises PipelineError with one line naming the file and, for a bad cell or row, the 1-based data
    row (header not counted), its line in the file and the column.
    """
    path = Path(path)
    layout = _read_layout(path)
    table, parser_error = _parse_fast(path, layout)
    if table is None:
        _raise_first_problem(path, layout, parser_error)
    if len(table) == 0:
        raise PipelineError(f"{path}: has a header row but no data rows")
    pixels = table[:, layout.pixel_cols]  # (N, H*W), now in pixel order
    images = np.ascontiguousarray(pixels.reshape(-1, 1, layout.side, layout.side))
    labels = None if layout.label_col is None else table[:, layout.label_col].astype(np.int64)
    return images, labels


def label_place(path: str | os.PathLike, index: int) -> str:
    """Where data row `index` (0-based, as returned by read_pixel_csv) holds its label, in the wording of the
    other errors: "row 3 (line 5), column 1 (label)". Re-scans the file (only called to report a bad label)."""
    path = Path(path)
    layout = _read_layout(path)
    column = "" if layout.label_col is None else f", column {layout.label_col + 1} ({LABEL})"
    with _open_text(path) as f:
        reader = csv.reader(f)
        next(reader)
        rows = 0
        for fields in reader:
            if fields:  # blank lines are not data rows
                rows += 1
                if rows == index + 1:
                    return f"row {rows} (line {reader.line_num}){column}"
    return f"row {index + 1}{column}"


def _open_text(path: Path):
    """Open for the csv module; a missing file or a folder is a user error, not a traceback."""
    try:
        # utf-8-sig drops a byte-order mark, which spreadsheet exports often start with.
        return open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise PipelineError(f"{path}: is a directory, expected a CSV file") from None
    except PermissionError:
        raise PipelineError(f"{path}: permission denied") from None


def _read_header(path: Path) -> list[str]:
    with _open_text(path) as f:
        try:
            header = next(csv.reader(f), None)
        except UnicodeDecodeError:
            raise PipelineError(f"{path}: not a UTF-8 text file") from None
        except csv.Error as e:
            raise PipelineError(f"{path}: header row is not valid CSV ({e})") from None
    if header is None:
        raise PipelineError(f"{path}: empty file, expected a header row `label,pixel0,pixel1,...`")
    if not any(name.strip() for name in header):
        raise PipelineError(f"{path}: header row (line 1) is blank")
    return [name.strip() for name in header]


def _read_layout(path: Path) -> _Layout:
    """Validate the header: `label` at most once, pixel0..pixel{n-1} exactly once each, n square."""
    names = _read_header(path)
    label_col = None
    pixel_at: dict[int, int] = {}  # pixel index -> file position
    for col, name in enumerate(names):
        where = f"{path}: header column {col + 1} ({name!r})"
        match = _PIXEL_NAME.fullmatch(name)
        if name == LABEL:
            if label_col is not None:
                raise PipelineError(f"{where}: duplicate `label` column (also column {label_col + 1})")
            label_col = col
        elif match:
            index = int(match.group(1))
            if index in pixel_at:
                raise PipelineError(f"{where}: duplicate pixel column (also column {pixel_at[index] + 1})")
            pixel_at[index] = col
        else:
            raise PipelineError(f"{where}: unknown column, expected `label` or `pixel<i>`")
    n = len(pixel_at)
    if n == 0:
        raise PipelineError(f"{path}: no pixel columns in the header, expected pixel0 ... pixel<H*W-1>")
    missing = sorted(set(range(n)) - set(pixel_at))
    if missing:
        raise PipelineError(f"{path}: {n} pixel columns but pixel{missing[0]} is missing: expected pixel0 ... pixel{n - 1}")
    side = math.isqrt(n)
    if side * side != n:
        raise PipelineError(f"{path}: {n} pixel columns do not make a square image (need H*W with H == W)")
    return _Layout(tuple(names), label_col, tuple(pixel_at[i] for i in range(n)), side)


def _parse_fast(path: Path, layout: _Layout) -> tuple[np.ndarray | None, str]:
    """All cells as uint8, (N, n_columns) in file column order -> (table, "") or (None, numpy's error).

    numpy refuses every bad cell (empty, non-integer, out of range) and rows whose field count
    differs from the first row's; the first row's count is checked against the header here.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            table = np.loadtxt(
                path, dtype=np.uint8, delimiter=",", skiprows=1, ndmin=2, comments=None, quotechar='"',
                encoding="utf-8-sig",
            )
    except ValueError as e:  # includes UnicodeDecodeError
        return None, (str(e).strip().splitlines() or [type(e).__name__])[0]
    if len(table) and table.shape[1] != len(layout.names):
        return None, f"data rows have {table.shape[1]} fields, the header has {len(layout.names)}"
    return table, ""


def _raise_first_problem(path: Path, layout: _Layout, parser_error: str) -> NoReturn:
    """Re-scan the file row by row and raise a PipelineError naming the first bad row / cell."""
    n_rows = 0
    with _open_text(path) as f:
        reader = csv.reader(f)
        try:
            next(reader)  # the header, already checked
            for fields in reader:
                if not fields:  # a blank line: skipped by loadtxt too, so not a data row
                    continue
                n_rows += 1
                _check_row(path, layout, fields, f"row {n_rows} (line {reader.line_num})")
        except UnicodeDecodeError:
            raise PipelineError(f"{path}: not a UTF-8 text file (bad bytes after data row {n_rows})") from None
        except csv.Error as e:
            raise PipelineError(f"{path}: row {n_rows + 1} is not valid CSV ({e})") from None
    if n_rows == 0:
        raise PipelineError(f"{path}: has a header row but no data rows")
    # numpy refused something the scan accepts: say what numpy said rather than guess.
    raise PipelineError(f"{path}: could not be read as a pixel CSV ({parser_error})")


def _check_row(path: Path, layout: _Layout, fields: list[str], where: str) -> None:
    n = len(layout.names)
    if len(fields) != n:
        count = f"{len(fields)} field" + ("" if len(fields) == 1 else "s")
        raise PipelineError(f"{path}: {where} has {count} but the header has {n} columns")
    joined = ",".join(fields)
    # The comma count guards against a quoted cell that itself contains a comma.
    if _PLAIN_ROW.fullmatch(joined) and joined.count(",") == n - 1:
        return
    for col, cell in enumerate(fields):
        problem = _cell_problem(cell)
        if problem:
            raise PipelineError(f"{path}: {where}, column {col + 1} ({layout.names[col]}): {problem}")


def _cell_problem(cell: str) -> str | None:
    """Why `cell` is not an integer 0-255, or None if it is one."""
    shown = repr(cell if len(cell) <= 20 else cell[:20] + "...")
    if not cell.strip():
        return "empty cell, expected an integer 0-255"
    match = _INTEGER.fullmatch(cell)
    if match is None:
        kind = "not an integer" if _FLOAT.fullmatch(cell) else "not a number"
        return f"value {shown} is {kind}, expected an integer 0-255"
    sign, digits = match.groups()
    if sign == "-" or int(digits) > 255:
        return f"value {shown} is outside 0-255"
    return None



def write_pixel_csv(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray | None = None) -> None:
    """(N, 1, H, W) or (N, H, W) uint8 -> `[label,]pixel0,…` CSV (the source's format), written atomically.

    Multi-channel images have no such format in the source; they are refused here.
    """
    n = images.shape[0]
    if images.ndim == 4 and images.shape[1] != 1:
        raise PipelineError(f"{path}: the pixel CSV format holds 1-channel images, got {images.shape[1]} channels")
    pixels = images.reshape(n, -1).astype(np.int64)
    columns = [f"pixel{i}" for i in range(pixels.shape[1])]
    if labels is not None:
        pixels = np.column_stack([labels.reshape(n, 1).astype(np.int64), pixels])
        columns = ["label"] + columns
    with atomic_path(path) as tmp:
        np.savetxt(tmp, pixels, fmt="%d", delimiter=",", header=",".join(columns), comments="")
