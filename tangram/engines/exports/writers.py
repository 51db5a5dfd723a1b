"""Spreadsheet writers that stream: one entry per export format.

``write(header, rows)`` yields bytes as rows arrive, so memory stays flat
whatever the row count. CSV goes out as it is written (UTF-8 with a
byte-order mark, which Excel needs to show Chinese). XLSX is a zip archive
that can only be finished at the end: openpyxl's write-only mode streams rows
into a temporary file on disk, which is then sent in chunks; past Excel's
1,048,576 rows a sheet, the rows continue on another sheet.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Protocol

CHUNK = 1 << 16
XLSX_MAX_ROWS = 1_048_576
# A text starting like a formula would run as one in a spreadsheet (CSV
# injection); a leading quote makes it text. The importer removes the quote.
_FORMULA_START = re.compile(r"^[=+\-@\t\r]")
_NUMBER = re.compile(r"^[+-]?\d[\d\s]*(\.\d+)?$")


def guard_text(value: str) -> str:
    if _FORMULA_START.match(value) and not _NUMBER.match(value):
        return "'" + value
    return value


class ExportFormat(Protocol):
    name: str
    extension: str
    media_type: str

    def write(self, header: list[str], rows: Iterable[list[Any]]) -> Iterator[bytes]: ...


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return guard_text(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return value


class CsvExport:
    name = "csv"
    extension = ".csv"
    media_type = "text/csv; charset=utf-8"

    def write(self, header: list[str], rows: Iterable[list[Any]]) -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow(header)
        for row in rows:
            writer.writerow([_csv_cell(v) for v in row])
            if buffer.tell() >= CHUNK:
                yield buffer.getvalue().encode("utf-8")
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode("utf-8")


class XlsxExport:
    name = "xlsx"
    extension = ".xlsx"
    media_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

    def write(self, header: list[str], rows: Iterable[list[Any]]) -> Iterator[bytes]:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell

        workbook = Workbook(write_only=True)
        sheet = None
        count = 0
        for row in rows:
            if sheet is None or count >= XLSX_MAX_ROWS - 1:
                sheet = workbook.create_sheet()
                sheet.append(header)
                count = 0
            cells: list[Any] = list(row)
            for i, value in enumerate(cells):
                if value.__class__ is str and value.startswith("="):
                    cell = WriteOnlyCell(sheet, value=value)
                    cell.data_type = "s"  # a text starting with "=" stays text
                    cells[i] = cell
            sheet.append(cells)
            count += 1
        if sheet is None:
            workbook.create_sheet().append(header)
        with tempfile.TemporaryFile() as tmp:
            workbook.save(tmp)
            tmp.seek(0)
            while chunk := tmp.read(CHUNK):
                yield chunk


EXPORT_FORMATS: dict[str, ExportFormat] = {f.name: f for f in (CsvExport(), XlsxExport())}
