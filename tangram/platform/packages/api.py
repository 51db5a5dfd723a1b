"""HTTP API of app packages (administrators only).

    POST   /api/packages/validate          zip upload (multipart "file") or JSON {path: content}
    POST   /api/packages/install           zip upload; ?demo=true
    POST   /api/packages/upgrade           zip upload; ?dry_run=true&confirm_destructive=true
                                           &allow_downgrade=true
    GET    /api/packages                   installed packages
    GET    /api/packages/{app}/customizations
    GET    /api/packages/{app}/export      ?layer=false&data=true → application/zip
    DELETE /api/packages/{app}
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tangram.clock import iso_utc
from tangram.errors import ErrorItem, LimitExceeded
from tangram.platform.deps import AdminActor, ContextDep, SettingsDep, request_language
from tangram.platform.packages import store
from tangram.platform.packages.data import existing_usernames
from tangram.platform.packages.errors import PackageInvalid
from tangram.platform.packages.export import export_package, validate_files
from tangram.platform.packages.install import (
    customizations,
    install_package,
    uninstall_app,
    upgrade_package,
)
from tangram.platform.packages.loader import Package, load_package
from tangram.platform.packages.packaged_files import FileTarget
from tangram.platform.packages.source import (
    PackageFiles,
    PackageLimits,
    check_member_name,
    read_zip,
    write_zip,
)
from tangram.settings import Settings

router = APIRouter(prefix="/api/packages", tags=["packages"])


def installation_limits(settings: SettingsDep) -> PackageLimits:
    """The limits this installation reads and exports packages with: a
    carried file may be as large as an upload (``max_upload_mb``)."""
    return PackageLimits.for_installation(settings.max_upload_mb << 20)


LimitsDep = Annotated[PackageLimits, Depends(installation_limits)]


async def _files(request: Request, limits: PackageLimits) -> PackageFiles:
    """The package of the request: a zip (multipart field ``file``, or the raw
    body as application/zip) or JSON ``{"files": {path: text or JSON}}`` —
    no more than ``limits.max_archive_bytes`` of it read."""
    most = limits.max_archive_bytes
    length = int(request.headers.get("content-length") or 0)
    if length > most:
        raise LimitExceeded(f"the upload has {length} bytes, more than {most}")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise PackageInvalid("send the package zip as the multipart field 'file'")
        data = await upload.read(most + 1)
        return read_zip(data, limits)
    body = bytearray()
    async for chunk in request.stream():  # a body without a length is counted too
        body += chunk
        if len(body) > most:
            raise LimitExceeded(f"the upload has more than {most} bytes")
    if content_type.startswith("application/json"):
        return _json_files(bytes(body))
    return read_zip(bytes(body), limits)


def _json_files(body: bytes) -> PackageFiles:
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise PackageInvalid(f"the body is not JSON: {exc}") from exc
    files = raw.get("files") if isinstance(raw, dict) else None
    if not isinstance(files, dict):
        raise PackageInvalid('send {"files": {"app.json": {...}, "forms/lead.json": {...}}}')
    out: PackageFiles = {}
    errors = []
    for name, content in files.items():
        problem = check_member_name(name)
        if problem:
            errors.append(ErrorItem(code="unsafe_path", file=name,
                                    message=f"{name!r} is refused: {problem}"))
            continue
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        out[name] = text.encode()
    if errors:
        raise PackageInvalid(errors[0].message, errors=errors)
    return out


async def _package(request: Request, limits: PackageLimits) -> Package:
    return load_package(await _files(request, limits))


@router.post("/validate")
async def validate(request: Request, ctx: ContextDep, admin: AdminActor,
                   settings: SettingsDep, limits: LimitsDep,
                   deep: bool = True) -> dict[str, Any]:
    """Every problem of the package (file, JSON path, message); installs nothing.
    Messages are in the caller's language, as install's are; rows' ``$owner``
    may name this installation's users."""
    return validate_files(await _files(request, limits), deep=deep,
                          language=request_language(request, settings, admin),
                          timezone=settings.timezone,
                          users=lambda names: set(existing_usernames(ctx.session, names)),
                          max_file_bytes=settings.max_upload_mb << 20)


def _file_target(request: Request, settings: Settings) -> FileTarget:
    """This installation's file storage and upload limit: where a package's
    files go, as uploads do."""
    return FileTarget(store=request.app.state.file_store,
                      max_bytes=settings.max_upload_mb << 20)


@router.get("")
def list_installed(ctx: ContextDep, _admin: AdminActor) -> list[dict[str, Any]]:
    return [{"app": p.app, "version": p.version, "name": p.manifest.get("name"),
             "installed_at": iso_utc(p.installed_at),
             "upgraded_at": iso_utc(p.upgraded_at),
             "dependencies": p.manifest.get("dependencies", {})}
            for p in store.list_installed(ctx.session)]


@router.post("/install", status_code=201)
async def install(request: Request, ctx: ContextDep, _admin: AdminActor,
                  settings: SettingsDep, limits: LimitsDep,
                  demo: bool = False) -> dict[str, Any]:
    return install_package(ctx, await _package(request, limits), demo=demo,
                           files=_file_target(request, settings))


@router.post("/upgrade")
async def upgrade(request: Request, ctx: ContextDep, _admin: AdminActor,
                  settings: SettingsDep, limits: LimitsDep, dry_run: bool = False,
                  confirm_destructive: bool = False,
                  allow_downgrade: bool = False) -> dict[str, Any]:
    return upgrade_package(ctx, await _package(request, limits), dry_run=dry_run,
                           confirm_destructive=confirm_destructive,
                           allow_downgrade=allow_downgrade,
                           files=_file_target(request, settings))


@router.get("/{app}/customizations")
def get_customizations(app: str, ctx: ContextDep, _admin: AdminActor) -> dict[str, Any]:
    return {"app": app, "customizations": customizations(ctx, app)}


@router.get("/{app}/export")
def export(app: str, request: Request, ctx: ContextDep, _admin: AdminActor,
           limits: LimitsDep, layer: bool = True, data: bool = False) -> Response:
    result = export_package(ctx, app, layer=layer, data=data,
                            files=request.app.state.file_store, limits=limits)
    response = Response(write_zip(result.files), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{app}.zip"'})
    for warning in result.warnings:  # what the package does not carry; UTF-8, %-encoded
        response.headers.append("X-Tangram-Export-Warning", quote(warning))
    return response


@router.delete("/{app}")
def uninstall(app: str, ctx: ContextDep, _admin: AdminActor) -> dict[str, Any]:
    return uninstall_app(ctx, app)
