"""API documentation served without any CDN: Swagger UI at /api/docs and ReDoc
at /api/redoc, their assets from the ``fastapi-offline`` package plus one
init script of ours (inline scripts would need a weaker CSP)."""

from __future__ import annotations

from html import escape
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from tangram.errors import NotFound

router = APIRouter(prefix="/api", include_in_schema=False)

DOCS_URL = "/api/docs"
REDOC_URL = "/api/redoc"
ASSETS_URL = "/api/docs/assets"

_OFFLINE = Path(str(files("fastapi_offline") / "static"))
_OWN = Path(__file__).resolve().parent.parent / "static"

# name -> (file, media type); a fixed table, so no path from the URL ever
# reaches the file system.
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (_OFFLINE / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (_OFFLINE / "swagger-ui.css", "text/css"),
    "redoc.standalone.js": (_OFFLINE / "redoc.standalone.js", "text/javascript"),
    "favicon.png": (_OFFLINE / "favicon.png", "image/png"),
    "swagger-init.js": (_OWN / "swagger-init.js", "text/javascript"),
}


def _page(title: str, head: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n")


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    assets = f"{root}{ASSETS_URL}"
    openapi = f"{root}{request.app.openapi_url}"
    return _page(
        f"{request.app.title} API",
        f'<link rel="icon" type="image/png" href="{assets}/favicon.png">\n'
        f'<link rel="stylesheet" href="{assets}/swagger-ui.css">\n',
        f'<div id="swagger-ui" data-openapi-url="{escape(openapi)}"></div>\n'
        f'<script src="{assets}/swagger-ui-bundle.js"></script>\n'
        f'<script src="{assets}/swagger-init.js"></script>\n',
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    assets = f"{root}{ASSETS_URL}"
    openapi = f"{root}{request.app.openapi_url}"
    return _page(
        f"{request.app.title} API",
        f'<link rel="icon" type="image/png" href="{assets}/favicon.png">\n',
        f'<redoc spec-url="{escape(openapi)}"></redoc>\n'
        f'<script src="{assets}/redoc.standalone.js"></script>\n',
    )


@router.get("/docs/assets/{name}")
def docs_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound(f"No documentation asset named {name!r}.")
    path, media_type = ASSETS[name]
    return FileResponse(path, media_type=media_type,
                        headers={"Cache-Control": "public, max-age=86400"})
