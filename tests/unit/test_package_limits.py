"""The limits a package is read under: files the rows carry
(``data/<set>/_files/<sha256>``) may be as large as the installation's
upload limit — larger than other entries may be —, zip bombs are still
refused without being expanded, and an export's check (``limit_problems``)
refuses exactly what reading refuses."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import struct
import tracemalloc
import zipfile

import pytest

from tangram.errors import LimitExceeded, TangramError
from tangram.platform.packages.errors import PackageInvalid
from tangram.platform.packages.source import (
    DEFAULT_LIMITS,
    PackageLimits,
    limit_problems,
    read_package,
    read_zip,
    write_folder,
    write_zip,
)

KIB = 1 << 10
APP = {"app.json": json.dumps({"format": 1, "key": "helpdesk", "version": "1.0.0",
                               "name": {"en": "Help desk"}}).encode()}
# An installation with a 1 MiB upload limit, whose other entries may have 256 KiB.
SMALL = PackageLimits.for_installation(1 << 20, max_file_bytes=256 * KIB,
                                       max_total_bytes=512 * KIB)


def carried(content: bytes, data_set: str = "seed") -> dict[str, bytes]:
    return {f"data/{data_set}/_files/{hashlib.sha256(content).hexdigest()}": content}


def test_the_limits_follow_the_installations_upload_limit():
    assert DEFAULT_LIMITS.max_attachment_bytes == 50 << 20  # the default max_upload_mb
    assert DEFAULT_LIMITS.max_file_bytes == 20 << 20
    assert DEFAULT_LIMITS.max_archive_bytes == (50 << 20) + (200 << 20)
    big = PackageLimits.for_installation(300 << 20)
    assert big.max_attachment_bytes == 300 << 20
    assert big.max_attachments_total_bytes == 300 << 20  # one upload always fits
    assert big.max_archive_bytes == (50 << 20) + (300 << 20)
    assert big.max_file_bytes == DEFAULT_LIMITS.max_file_bytes


def test_a_carried_file_over_the_entry_limit_but_within_the_upload_limit_is_read(tmp_path):
    content = secrets.token_bytes(600 * KIB)  # > 256 KiB per entry, < 1 MiB upload limit
    files = {**APP, **carried(content)}
    assert read_zip(write_zip(files), SMALL) == files
    write_folder(files, tmp_path / "pkg")
    assert read_package(tmp_path / "pkg", SMALL) == files
    (tmp_path / "pkg.zip").write_bytes(write_zip(files))
    assert read_package(tmp_path / "pkg.zip", SMALL) == files
    assert limit_problems(files, SMALL) == []
    # Any other entry keeps its own limit.
    other = {**APP, "data/seed/ticket.json": b"[" + b" " * (600 * KIB) + b"]"}
    with pytest.raises(LimitExceeded, match="more than a package entry may have"):
        read_zip(write_zip(other), SMALL)


def test_a_carried_file_over_the_upload_limit_is_refused_naming_its_entry(tmp_path):
    content = secrets.token_bytes((1 << 20) + 1)
    files = {**APP, **carried(content)}
    entry = next(iter(carried(content)))
    for read in (lambda: read_zip(write_zip(files), SMALL),
                 lambda: (write_folder(files, tmp_path / "pkg"),
                          read_package(tmp_path / "pkg", SMALL))):
        with pytest.raises(LimitExceeded) as refused:
            read()
        (error,) = refused.value.errors
        assert (error.code, error.file) == ("data_file", entry)
        assert "upload limit of 1 MB (max_upload_mb)" in error.message


def test_the_carried_files_together_and_the_archive_have_a_bound():
    limits = PackageLimits.for_installation(512 * KIB, max_attachments_total_bytes=1 << 20,
                                            max_archive_bytes=1300 * KIB)
    three = {**APP, **{k: v for i in range(3)
                       for k, v in carried(secrets.token_bytes(400 * KIB)).items()}}
    with pytest.raises(LimitExceeded, match="rows carry expand to more than 1 MB"):
        read_zip(write_zip(three), limits)
    two = {**APP, **{k: v for i in range(2)
                     for k, v in carried(secrets.token_bytes(400 * KIB)).items()}}
    assert read_zip(write_zip(two), limits) == two
    with pytest.raises(LimitExceeded, match="archive has"):
        read_zip(write_zip(two), PackageLimits.for_installation(
            512 * KIB, max_archive_bytes=700 * KIB))


@pytest.mark.parametrize("case", ["fits", "entry", "carried", "carried_total", "total",
                                  "archive", "count"])
def test_an_exports_check_refuses_exactly_what_reading_refuses(case):
    limits = PackageLimits.for_installation(
        512 * KIB, max_file_bytes=64 * KIB, max_total_bytes=100 * KIB,
        max_attachments_total_bytes=800 * KIB, max_files=6,
        max_archive_bytes=10 * KIB if case == "archive" else 2 << 20)
    files = {**APP, **carried(secrets.token_bytes(300 * KIB)),
             "data/seed/ticket.json": b"[]"}
    files |= {
        "fits": {},
        "entry": {"data/seed/note.json": b"[" + b" " * (70 * KIB) + b"]"},
        "carried": carried(secrets.token_bytes(600 * KIB)),
        "carried_total": carried(secrets.token_bytes(510 * KIB)),
        "total": {f"templates/t{i}.html": secrets.token_hex(20 * KIB).encode()
                  for i in range(3)},
        "archive": {},
        "count": {f"templates/t{i}.html": b"x" for i in range(5)},
    }[case]
    problems = limit_problems(files, limits)
    try:
        read_zip(write_zip(files), limits)
        refused = False
    except TangramError:
        refused = True
    assert refused == bool(problems) == (case != "fits"), problems


def test_an_exports_check_refuses_a_file_that_compresses_too_well_as_reading_does():
    limits = PackageLimits.for_installation(50 << 20)
    files = {**APP, **carried(b"\0" * (2 << 20))}  # within every size limit
    with pytest.raises(LimitExceeded, match="zip bomb"):
        read_zip(write_zip(files), limits)
    assert any("zip bomb" in p for p in limit_problems(files, limits))
    fine = {**APP, **carried(secrets.token_bytes(2 << 20))}
    assert read_zip(write_zip(fine), limits) == fine
    assert limit_problems(fine, limits) == []


def _zip_bomb_entry(declared: int | None) -> bytes:
    """A package whose carried file is 30 MiB of zeros (compressed to some
    kilobytes); ``declared``: the size its headers claim instead."""
    name = "data/seed/_files/" + "0" * 64
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.json", APP["app.json"])
        archive.writestr(name, b"\0" * (30 << 20))
    raw = bytearray(buffer.getvalue())
    if declared is not None:  # patch the local header and the central directory
        encoded = name.encode()
        for signature, name_at, size_at, header in ((b"PK\x03\x04", 26, 22, 30),
                                                    (b"PK\x01\x02", 28, 24, 46)):
            at = raw.find(signature)
            while at != -1:
                length = struct.unpack_from("<H", raw, at + name_at)[0]
                if raw[at + header:at + header + length] == encoded:
                    struct.pack_into("<I", raw, at + size_at, declared)
                at = raw.find(signature, at + 4)
    return bytes(raw)


@pytest.mark.parametrize("declared", [None, 1000])
def test_a_carried_file_that_inflates_far_is_refused_without_expanding_it(declared):
    """Within the upload limit by its headers (truthful or not), 30 MiB of
    zeros in a few kilobytes: refused, and never held in memory whole."""
    bomb = _zip_bomb_entry(declared)
    assert len(bomb) < 100 * KIB
    tracemalloc.start()
    try:
        with pytest.raises((LimitExceeded, PackageInvalid), match="zip bomb|cannot be read"):
            read_zip(bomb, PackageLimits.for_installation(50 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # refused long before 30 MiB came out


def test_a_carried_file_declared_over_the_upload_limit_is_not_opened():
    bomb = _zip_bomb_entry(None)  # 30 MiB declared, upload limit 1 MiB
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded, match="upload limit"):
            read_zip(bomb, SMALL)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_zip_of_the_package_folder_keeps_the_carried_files_budget():
    content = secrets.token_bytes(600 * KIB)
    files = {**APP, **carried(content)}
    nested = write_zip({f"helpdesk/{k}": v for k, v in files.items()})
    assert read_zip(nested, SMALL) == files
