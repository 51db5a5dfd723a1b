"""Reading a package's files from a folder or a zip — untrusted input.

Everything is read into memory as ``{relative path: bytes}`` before anything
is parsed, under limits: number of files, size of each file, total size, and
for zips the compression ratio (a zip bomb expands a few kilobytes into
gigabytes; we stop counting as soon as a limit is passed, without expanding
further). Absolute paths, ``..``, backslashes, drive letters, symlinks and
special files are refused, in a folder as in a zip. Nothing in a package is
ever executed or imported.

    files = read_package(Path("apps_catalog/crm"))
    files = read_package_bytes(uploaded_zip_bytes)
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tangram.errors import ErrorItem, LimitExceeded
from tangram.platform.packages.errors import PackageInvalid


@dataclass(frozen=True)
class PackageLimits:
    """How big a package may be. Defaults fit the CRM with demo rows many
    times over; a host may lower them."""

    max_archive_bytes: int = 50 * 1024 * 1024
    max_files: int = 2000
    max_file_bytes: int = 20 * 1024 * 1024
    max_total_bytes: int = 200 * 1024 * 1024
    max_ratio: int = 200  # uncompressed / compressed, per entry and overall
    max_depth: int = 6


DEFAULT_LIMITS = PackageLimits()
PackageFiles = dict[str, bytes]


def _too_big(message: str) -> LimitExceeded:
    return LimitExceeded(f"the package is refused: {message}")


def check_member_name(name: str, limits: PackageLimits = DEFAULT_LIMITS) -> str | None:
    """Why ``name`` may not be a package path (None when it may)."""
    if not name or "\x00" in name:
        return "an empty or NUL-containing name"
    if "\\" in name:
        return "a backslash in the path (use /)"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    parts = PurePosixPath(name).parts
    if any(p in ("..", ".") for p in name.split("/")):
        return "a '..' or '.' path segment (path traversal)"
    if len(parts) > limits.max_depth:
        return f"deeper than {limits.max_depth} folders"
    if len(name) > 300:
        return "a path longer than 300 characters"
    return None


def _refuse(errors: list[ErrorItem]) -> PackageInvalid:
    return PackageInvalid(f"the package is refused: {errors[0].message}"
                          + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                          errors=errors)


def read_zip(data: bytes, limits: PackageLimits = DEFAULT_LIMITS) -> PackageFiles:
    if len(data) > limits.max_archive_bytes:
        raise _too_big(f"the archive has {len(data)} bytes, more than "
                       f"{limits.max_archive_bytes}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise PackageInvalid("the upload is not a zip archive", errors=[ErrorItem(
            code="bad_zip", message=f"not a zip archive: {exc}")]) from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_files:
            raise _too_big(f"{len(infos)} entries, more than {limits.max_files}")
        errors: list[ErrorItem] = []
        declared = 0
        for info in infos:
            problem = check_member_name(info.filename.rstrip("/") if info.is_dir()
                                        else info.filename, limits)
            mode = info.external_attr >> 16
            if problem is None and stat.S_ISLNK(mode):
                problem = "a symbolic link"
            if problem is None and info.flag_bits & 0x1:
                problem = "an encrypted entry"
            if problem is not None:
                errors.append(ErrorItem(code="unsafe_path", file=info.filename,
                                        message=f"{info.filename!r} is refused: {problem}"))
            declared += info.file_size
            if info.file_size > limits.max_file_bytes:
                raise _too_big(f"{info.filename!r} expands to {info.file_size} bytes, more "
                               f"than {limits.max_file_bytes}")
        if errors:
            raise _refuse(errors)
        if declared > limits.max_total_bytes:
            raise _too_big(f"it expands to {declared} bytes, more than "
                           f"{limits.max_total_bytes}")
        files: PackageFiles = {}
        total = 0
        for info in infos:
            if info.is_dir():
                continue
            # The sizes in the directory can lie: read in chunks and count
            # what really comes out.
            out = bytearray()
            try:
                with archive.open(info) as member:
                    while chunk := member.read(64 * 1024):
                        out += chunk
                        total += len(chunk)
                        if len(out) > limits.max_file_bytes or total > limits.max_total_bytes:
                            raise _too_big(f"{info.filename!r} expands beyond the size limit")
                        if len(out) > 1024 * 1024 and \
                                len(out) > limits.max_ratio * max(info.compress_size, 1):
                            raise _too_big(f"{info.filename!r} is compressed more than "
                                           f"{limits.max_ratio}:1 (a zip bomb?)")
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError) as exc:
                raise _refuse([ErrorItem(code="bad_zip", file=info.filename,
                                         message=f"{info.filename!r} cannot be read: {exc}")]
                              ) from exc
            if info.filename in files:
                raise _refuse([ErrorItem(code="duplicate_entry", file=info.filename,
                                         message=f"{info.filename!r} appears twice")])
            files[info.filename] = bytes(out)
        if total > 1024 * 1024 and total > limits.max_ratio * max(len(data), 1):
            raise _too_big(f"it expands {total // max(len(data), 1)} times (limit "
                           f"{limits.max_ratio}; a zip bomb?)")
    return _strip_common_root(files)


def _strip_common_root(files: PackageFiles) -> PackageFiles:
    """A zip made of the folder ``crm/`` holds ``crm/app.json``: accept it."""
    if "app.json" in files or not files:
        return files
    roots = {name.split("/", 1)[0] for name in files}
    if len(roots) == 1 and all("/" in name for name in files):
        root = roots.pop() + "/"
        return {name[len(root):]: data for name, data in files.items()}
    return files


def read_folder(path: Path, limits: PackageLimits = DEFAULT_LIMITS) -> PackageFiles:
    root = path.resolve()
    files: PackageFiles = {}
    errors: list[ErrorItem] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            full = here / name
            rel = full.relative_to(root).as_posix()
            if name.startswith(".") or name == "__pycache__":
                if full.is_dir() and not full.is_symlink():
                    dirnames.remove(name)
                continue  # .git, .DS_Store, editor files
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                errors.append(ErrorItem(code="unsafe_path", file=rel,
                                        message=f"{rel!r} is refused: a symbolic link"))
                if name in dirnames:
                    dirnames.remove(name)
                continue
            problem = check_member_name(rel, limits)
            if problem is not None:
                errors.append(ErrorItem(code="unsafe_path", file=rel,
                                        message=f"{rel!r} is refused: {problem}"))
                continue
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                errors.append(ErrorItem(code="unsafe_path", file=rel,
                                        message=f"{rel!r} is refused: not a regular file"))
                continue
            if info.st_size > limits.max_file_bytes:
                raise _too_big(f"{rel!r} has {info.st_size} bytes, more than "
                               f"{limits.max_file_bytes}")
            total += info.st_size
            if total > limits.max_total_bytes or len(files) >= limits.max_files:
                raise _too_big(f"the folder holds more than {limits.max_total_bytes} bytes "
                               f"or {limits.max_files} files")
            files[rel] = full.read_bytes()
    if errors:
        raise _refuse(errors)
    return files


def read_package(path: Path, limits: PackageLimits = DEFAULT_LIMITS) -> PackageFiles:
    """A package folder or ``.zip`` file → its files."""
    if path.is_dir():
        return read_folder(path, limits)
    if not path.is_file():
        raise PackageInvalid(f"{path} is neither a package folder nor a zip file")
    size = path.stat().st_size
    if size > limits.max_archive_bytes:
        raise _too_big(f"the archive has {size} bytes, more than {limits.max_archive_bytes}")
    return read_zip(path.read_bytes(), limits)


def write_zip(files: PackageFiles) -> bytes:
    """Files → a deterministic zip (sorted entries, fixed timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, files[name])
    return buffer.getvalue()


def write_folder(files: PackageFiles, path: Path) -> None:
    for name, data in sorted(files.items()):
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
