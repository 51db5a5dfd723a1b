"""Spreadsheet files in and out: one entry per file format.

A format reads a file as a header and data rows (``Sheet``) and writes rows
back in the same format (error files). CSV detects its encoding — a byte-order
mark, else strict UTF-8, else GB18030 (a superset of GBK, which Excel in China
writes) — and its delimiter; XLSX reads the first worksheet with openpyxl's
read-only mode, so neither ever holds the whole file in memory. An XLSX formula
whose file holds no computed value is read as :class:`Formula` (its text), so
that the import reports it instead of reading an empty cell.

    >>> fmt = format_for("客户.csv")
    >>> with open("客户.csv", "rb") as fh:
    ...     sheet = fmt.open(fh)
    ...     sheet.header, sheet.encoding
    (['姓名', '手机'], 'gb18030')
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import IO, Any, BinaryIO, Protocol, cast

from tangram.engines.exports.writers import guard_text
from tangram.errors import ErrorItem, ValidationFailed

Cell = Any  # str from CSV; str, int, float, bool, date/datetime/time, Formula or None from XLSX


class Formula(str):
    """An XLSX formula cell without a computed value, as its formula text
    (``=SUM(B2:C2)``). Programs that write files without calculating them
    (openpyxl, many exporters) leave formulas so; Excel and WPS compute and
    store the value when they save the file."""


@dataclass
class Sheet:
    """A file opened for reading: its column titles, then its data rows.

    ``rows`` yields ``(row_number, cells)``; the header is row 1, so the first
    data row is 2 (what a spreadsheet shows). Rows with no value are skipped.
    """

    header: list[str]
    rows: Iterator[tuple[int, list[Cell]]]
    encoding: str | None = None


class FileFormat(Protocol):
    name: str
    extensions: tuple[str, ...]
    media_type: str

    def open(self, source: BinaryIO) -> Sheet:
        """Read ``source`` (seekable); raises ValidationFailed for an unreadable file."""

    def write(self, target: IO[bytes], header: list[str], rows: Iterable[list[Cell]]) -> None:
        """Write a header and rows (error files, templates)."""


def _unreadable(name: str, why: str) -> ValidationFailed:
    item = ErrorItem(code="file_unreadable", field="file",
                     message=f"cannot read the file as {name}: {why}")
    return ValidationFailed([item], item.message)


def is_blank(cells: list[Cell]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def _title(cell: Cell) -> str:
    return "" if cell is None else str(cell).strip()


# --------------------------------------------------------------------------- CSV

def detect_encoding(source: BinaryIO) -> str:
    """``utf-8-sig`` (BOM), ``utf-8`` when every byte decodes strictly, else
    ``gb18030``. Reads the stream once, in chunks, and rewinds it."""
    source.seek(0)
    head = source.read(4)
    source.seek(0)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    # UTF-32's little-endian mark begins with UTF-16's: test it first.
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        while chunk := source.read(1 << 20):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"
    finally:
        source.seek(0)


class _Borrowed(io.BufferedIOBase):
    """A stream lent to a text wrapper: closing the wrapper leaves it open
    (the caller owns it and rewinds it to read again)."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._raw.read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        pass


class CsvFormat:
    name = "csv"
    extensions: tuple[str, ...] = (".csv", ".tsv")
    media_type = "text/csv; charset=utf-8"
    delimiters = ",\t;|"

    def open(self, source: BinaryIO) -> Sheet:
        encoding = detect_encoding(source)
        text = io.TextIOWrapper(cast(BinaryIO, _Borrowed(source)), encoding=encoding,
                                newline="")
        try:
            sample = text.read(64 * 1024)
        except UnicodeDecodeError as exc:
            raise _unreadable("CSV", f"{exc}") from None
        if "\x00" in sample:
            # GB18030 (and a stray byte-order mark) decode almost any bytes:
            # NUL characters are what gives a binary file away.
            raise _unreadable("CSV", "it contains NUL characters, so it is not a text file "
                                     "(is it a spreadsheet saved in another format?)")
        text.seek(0)
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=self.delimiters).delimiter
        except csv.Error:
            delimiter = ","
        reader = csv.reader(text, delimiter=delimiter)
        try:
            header = [_title(c) for c in next(reader)]
        except StopIteration:
            raise _unreadable("CSV", "the file is empty") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise _unreadable("CSV", str(exc)) from None

        def rows() -> Iterator[tuple[int, list[Cell]]]:
            # csv counts physical lines; a quoted cell may span several
            for number, cells in enumerate(reader, start=2):
                if not is_blank(cells):
                    yield number, cells

        return Sheet(header=header, rows=rows(), encoding=encoding.replace("-sig", ""))

    def write(self, target: IO[bytes], header: list[str], rows: Iterable[list[Cell]]) -> None:
        # A byte-order mark, so that Excel opens UTF-8 (Chinese) correctly.
        text = io.TextIOWrapper(target, encoding="utf-8-sig", newline="",  # type: ignore[arg-type]
                                write_through=True)
        writer = csv.writer(text)
        # Guarded like exports: a cell starting with = + - @ would run as a
        # formula in Excel (the importer removes the guard again).
        writer.writerow([guard_text(t) for t in header])
        for row in rows:
            writer.writerow(["" if c is None else guard_text(c) if isinstance(c, str) else c
                             for c in row])
        text.flush()
        text.detach()


# --------------------------------------------------------------------------- XLSX

def _xlsx_cell(value: Any, formula: Any) -> Cell:
    if value is None and formula is not None:
        # None with data_only, a formula without: no computed value in the file.
        return Formula(getattr(formula, "text", formula))
    # Excel stores every number as a float: 13812345678.0 is a phone number,
    # 3.0 an integer. Excel keeps 15 significant digits; a float past 2**53 is
    # read as the digits of its shortest form (1.23456789012346E+17 →
    # 123456789012346000), not the binary value's noise (…6048).
    if isinstance(value, float) and value.is_integer():
        return int(value) if abs(value) < 2**53 else int(Decimal(repr(value)))
    return value


# A formula element (<f>, <f t="shared" …/>, <x:f>) in a worksheet's XML; text
# in that XML is escaped, so "<f" is always a tag.
_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s>/]")


def _may_hold_formulas(sheet: Any) -> bool:
    """Whether a read-only sheet's XML has a formula: a scan of its bytes, far
    cheaper than reading the sheet a second time. (openpyxl opens that XML
    with ``_get_source``; were it gone, assume the sheet may.)"""
    get_source = getattr(sheet, "_get_source", None)
    if get_source is None:
        return True
    tail = b""
    with get_source() as src:
        while chunk := src.read(1 << 20):
            if _FORMULA_TAG.search(tail + chunk):
                return True
            tail = chunk[-64:]
    return False


class XlsxFormat:
    name = "xlsx"
    extensions: tuple[str, ...] = (".xlsx", ".xlsm")
    media_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

    def open(self, source: BinaryIO) -> Sheet:
        from zipfile import BadZipFile

        from openpyxl import load_workbook

        try:
            workbook = load_workbook(source, read_only=True, data_only=True)
            # A formula without a computed value reads as None above, like an
            # empty cell: the same sheet read for its formulas tells them apart.
            formulas = load_workbook(source, read_only=True, data_only=False) \
                if _may_hold_formulas(workbook.worksheets[0]) else None
        except (BadZipFile, OSError, KeyError, ValueError) as exc:
            raise _unreadable("XLSX", str(exc) or type(exc).__name__) from None
        values = zip(workbook.worksheets[0].iter_rows(values_only=True),
                     formulas.worksheets[0].iter_rows(values_only=True) if formulas
                     else itertools.repeat(()), strict=False)

        def close() -> None:
            workbook.close()
            if formulas is not None:
                formulas.close()

        first = next(values, None)
        if first is None:
            close()
            raise _unreadable("XLSX", "the first worksheet is empty")
        header = [_title(c) for c in first[0]]
        while header and not header[-1]:
            header.pop()

        def rows() -> Iterator[tuple[int, list[Cell]]]:
            try:
                for number, (raw, texts) in enumerate(values, start=2):
                    cells = [_xlsx_cell(c, f) for c, f in itertools.zip_longest(raw, texts)]
                    if not is_blank(cells):
                        yield number, cells
            finally:
                close()

        return Sheet(header=header, rows=rows(), encoding=None)

    def write(self, target: IO[bytes], header: list[str], rows: Iterable[list[Cell]]) -> None:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell

        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet()
        sheet.append(header)
        for row in rows:
            out = []
            for value in row:
                cell = WriteOnlyCell(sheet, value=value)
                if cell.data_type == "f":  # text starting with "=" stays text
                    cell.data_type = "s"
                out.append(cell)
            sheet.append(out)
        workbook.save(target)


FILE_FORMATS: dict[str, FileFormat] = {f.name: f for f in (CsvFormat(), XlsxFormat())}


def format_for(file_name: str) -> FileFormat:
    """The format of a file, by its extension; ValidationFailed names the known ones."""
    ext = os.path.splitext(file_name)[1].lower()
    for fmt in FILE_FORMATS.values():
        if ext in fmt.extensions:
            return fmt
    known = ", ".join(e for f in FILE_FORMATS.values() for e in f.extensions)
    item = ErrorItem(code="file_format", field="file", message=(
        f"{file_name!r} is not a file type that can be imported; use one of: {known} "
        "(save .xls files as .xlsx first)"))
    raise ValidationFailed([item], item.message)


def cell_text(value: Cell) -> str:
    """A cell as text, as the user typed it (error files, messages)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ") if value.time() != time(0) else value.date().isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def count_rows(fmt: FileFormat, source: BinaryIO) -> int:
    """Data rows of a file (for progress); reads it once."""
    source.seek(0)
    sheet = fmt.open(source)
    total = sum(1 for _ in sheet.rows)
    source.seek(0)
    return total
