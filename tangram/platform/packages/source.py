"""Reading a package's files from a folder or a zip — untrusted input.

Everything is read into memory as ``{relative path: bytes}`` before anything
is parsed, under limits: number of files, size of each file, total size, and
for zips the size of the archive and the compression ratio (a zip bomb
expands a few kilobytes into gigabytes; we stop counting as soon as a limit
is passed, without expanding further). The files rows carry
(``data/<set>/_files/<sha256>``) have their own budget, set by the
installation's upload limit (:meth:`PackageLimits.for_installation`): a file
the installation accepted as an upload fits in a package it reads.
Absolute paths, ``..``, backslashes, drive letters, symlinks and special
files are refused, in a folder as in a zip. Nothing in a package is
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

MIB = 1 << 20
FILES_FOLDER = "_files"  # data/<set>/_files/<sha256>: the files rows carry
DEFAULT_UPLOAD_BYTES = 50 * MIB  # the default max_upload_mb
ATTACHMENTS_TOTAL_BYTES = 200 * MIB
DEFINITIONS_ARCHIVE_BYTES = 50 * MIB


@dataclass(frozen=True)
class PackageLimits:
    """How big a package may be — the bound on what reading one holds in
    memory. Two budgets: definitions, data rows, templates and docs (each
    entry ``max_file_bytes``, together ``max_total_bytes``, expanded), and
    the files rows carry, ``data/<set>/_files/<sha256>`` (each
    ``max_attachment_bytes`` — the installation's upload limit —, together
    ``max_attachments_total_bytes``). The archive itself may have
    ``max_archive_bytes``; every entry at most ``max_ratio`` times its
    compressed size. Defaults are those of an installation with the default
    upload limit (:meth:`for_installation`); they fit the CRM with demo rows
    many times over; a host may lower them."""

    max_archive_bytes: int = DEFINITIONS_ARCHIVE_BYTES + ATTACHMENTS_TOTAL_BYTES
    max_files: int = 2000
    max_file_bytes: int = 20 * MIB
    max_total_bytes: int = 200 * MIB
    max_ratio: int = 200  # uncompressed / compressed, per entry and overall
    max_depth: int = 6
    max_attachment_bytes: int = DEFAULT_UPLOAD_BYTES
    max_attachments_total_bytes: int = ATTACHMENTS_TOTAL_BYTES

    @classmethod
    def for_installation(cls, max_upload_bytes: int, **overrides: int) -> PackageLimits:
        """The limits an installation reads (and exports) packages with: each
        carried file up to its upload limit, so no file it accepted is kept
        out of a package; the carried files together up to 200 MB (one
        upload limit, when that is larger); the archive up to 50 MB for the
        definitions, rows and templates plus that. ``overrides`` set any
        other limit (tests use small ones).

            limits = PackageLimits.for_installation(settings.max_upload_mb << 20)
        """
        attachments = max(ATTACHMENTS_TOTAL_BYTES, max_upload_bytes)
        values = {"max_attachment_bytes": max_upload_bytes,
                  "max_attachments_total_bytes": attachments,
                  "max_archive_bytes": DEFINITIONS_ARCHIVE_BYTES + attachments}
        return cls(**(values | overrides))


DEFAULT_LIMITS = PackageLimits.for_installation(DEFAULT_UPLOAD_BYTES)
PackageFiles = dict[str, bytes]


def is_carried_file(name: str) -> bool:
    """``data/<set>/_files/<sha256>``: the content of a file rows carry."""
    parts = name.split("/")
    return len(parts) == 4 and parts[0] == "data" and parts[2] == FILES_FOLDER


def mib(n: int) -> str:
    """A size in MB, as the limits are given."""
    return f"{n / MIB:.1f} MB" if n % MIB else f"{n // MIB} MB"


class _Budget:
    """What a package's entries expand to, against the limits: each entry by
    its kind (a carried file or anything else), and each kind's total."""

    def __init__(self, limits: PackageLimits) -> None:
        self.limits = limits
        self.totals = {True: 0, False: 0}  # carried file? → bytes

    def entry_problem(self, name: str, size: int) -> str | None:
        """Why an entry of ``size`` bytes is refused (None when it is not)."""
        if is_carried_file(name):
            cap = self.limits.max_attachment_bytes
            if size > cap:
                return (f"{name!r} expands to {size} bytes ({mib(size)}), more than this "
                        f"installation's upload limit of {mib(cap)} (max_upload_mb)")
        elif size > self.limits.max_file_bytes:
            return (f"{name!r} expands to {size} bytes, more than a package entry may have "
                    f"({self.limits.max_file_bytes})")
        return None

    def add(self, name: str, size: int) -> str | None:
        """Count ``size`` more bytes of ``name``; why the total is past its
        limit (None while it is not)."""
        carried = is_carried_file(name)
        self.totals[carried] += size
        if carried and self.totals[True] > self.limits.max_attachments_total_bytes:
            return (f"the files the rows carry expand to more than "
                    f"{mib(self.limits.max_attachments_total_bytes)} in all")
        if not carried and self.totals[False] > self.limits.max_total_bytes:
            return (f"its definitions, data rows and templates expand to more than "
                    f"{self.limits.max_total_bytes} bytes in all")
        return None


def _too_big(message: str) -> LimitExceeded:
    return LimitExceeded(f"the package is refused: {message}")


def limit_problems(files: PackageFiles, limits: PackageLimits = DEFAULT_LIMITS) -> list[str]:
    """Why reading ``files`` (as :func:`write_zip` archives them) under
    ``limits`` would refuse them — the same checks, so an export can say so
    before an install does."""
    budget = _Budget(limits)
    out = [p for name, data in sorted(files.items())
           if (p := budget.entry_problem(name, len(data)))]
    out += sorted({p for name, data in files.items() if (p := budget.add(name, len(data)))})
    if len(files) > limits.max_files:
        out.append(f"{len(files)} entries, more than {limits.max_files}")
    total = sum(len(d) for d in files.values())
    # Below 1 MB nothing is refused for its compression ratio, and an archive
    # is at most its contents plus headers: only else compress to know.
    if total > MIB or total + 1024 * len(files) + total // 1000 > limits.max_archive_bytes:
        out += _archive_problems(write_zip(files), total, limits)
    return out


def _archive_problems(archive: bytes, total: int, limits: PackageLimits) -> list[str]:
    """The checks of :func:`read_zip` on the archive's size and compression."""
    out = []
    if len(archive) > limits.max_archive_bytes:
        out.append(f"the archive has {len(archive)} bytes, more than "
                   f"{limits.max_archive_bytes}")
    with zipfile.ZipFile(io.BytesIO(archive)) as reread:
        out += [f"{info.filename!r} is compressed more than {limits.max_ratio}:1 (a zip bomb?)"
                for info in reread.infolist() if info.file_size > MIB
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)]
    if total > MIB and total > limits.max_ratio * max(len(archive), 1):
        out.append(f"it expands {total // max(len(archive), 1)} times (limit "
                   f"{limits.max_ratio}; a zip bomb?)")
    return out


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
        root = _common_root([i.filename for i in infos if not i.is_dir()])
        errors: list[ErrorItem] = []
        declared = _Budget(limits)
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
            if info.is_dir():
                continue
            name = info.filename[len(root):]
            too_big = declared.entry_problem(name, info.file_size)
            if too_big:
                raise _entry_too_big(name, too_big)
            if over := declared.add(name, info.file_size):
                raise _too_big(over)
        if errors:
            raise _refuse(errors)
        files: PackageFiles = {}
        read = _Budget(limits)
        total = 0
        for info in infos:
            if info.is_dir():
                continue
            name = info.filename[len(root):]
            # The sizes in the directory can lie: read in chunks and count
            # what really comes out.
            out = bytearray()
            try:
                with archive.open(info) as member:
                    while chunk := member.read(64 * 1024):
                        out += chunk
                        total += len(chunk)
                        if read.entry_problem(name, len(out)) or read.add(name, len(chunk)):
                            raise _too_big(f"{info.filename!r} expands beyond the size limit")
                        if len(out) > MIB and \
                                len(out) > limits.max_ratio * max(info.compress_size, 1):
                            raise _too_big(f"{info.filename!r} is compressed more than "
                                           f"{limits.max_ratio}:1 (a zip bomb?)")
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError) as exc:
                raise _refuse([ErrorItem(code="bad_zip", file=info.filename,
                                         message=f"{info.filename!r} cannot be read: {exc}")]
                              ) from exc
            if name in files:
                raise _refuse([ErrorItem(code="duplicate_entry", file=info.filename,
                                         message=f"{info.filename!r} appears twice")])
            files[name] = bytes(out)
        if total > MIB and total > limits.max_ratio * max(len(data), 1):
            raise _too_big(f"it expands {total // max(len(data), 1)} times (limit "
                           f"{limits.max_ratio}; a zip bomb?)")
    return files


def _entry_too_big(name: str, problem: str) -> LimitExceeded:
    """An entry past its size limit; a carried file's names its entry, as
    validation names a damaged one."""
    code = "data_file" if is_carried_file(name) else "limit_exceeded"
    return LimitExceeded(f"the package is refused: {problem}",
                         errors=[ErrorItem(code=code, file=name, path="$", message=problem)])


def _common_root(names: list[str]) -> str:
    """A zip made of the folder ``crm/`` holds ``crm/app.json``: its entries
    are read without ``crm/`` (the root, "" for none)."""
    if "app.json" in names or not names:
        return ""
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) == 1 and all("/" in name for name in names):
        return roots.pop() + "/"
    return ""


def read_folder(path: Path, limits: PackageLimits = DEFAULT_LIMITS) -> PackageFiles:
    root = path.resolve()
    files: PackageFiles = {}
    errors: list[ErrorItem] = []
    budget = _Budget(limits)
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
            too_big = budget.entry_problem(rel, info.st_size)
            if too_big:
                raise _entry_too_big(rel, too_big)
            if over := budget.add(rel, info.st_size):
                raise _too_big(over)
            if len(files) >= limits.max_files:
                raise _too_big(f"the folder holds more than {limits.max_files} files")
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
