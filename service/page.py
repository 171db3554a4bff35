"""The web page at `/` and its files under `/web/`: a client of the public API, shipped in the wheel;
and the interactive API docs at `/docs` (Swagger UI's files from the fastapi-offline package, no CDN).

Only the files in `service/web/` are served, by exact name. Every answer carries a strict
Content-Security-Policy: scripts, styles and everything else come from this origin alone (no
inline code, no CDN), except that the page may talk to and play media from the storage origin
that signs upload and download URLs (S3 or MinIO in a deployment; this API under `cmet serve`), and
show images from it (a contact sheet's cells).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import FileResponse

from cmet_core.errors import ErrorCode
from cmet_jobs.errors import RequestError
from service.deps import StorageDep

WEB = Path(__file__).resolve().parent / "web"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
FILES = {p.name: TYPES[p.suffix] for p in WEB.iterdir() if p.suffix in TYPES} if WEB.is_dir() else {}
SWAGGER_UI = Path(str(files("fastapi_offline") / "static"))
"""Swagger UI's script and style as the fastapi-offline package ships them (its HTML has an inline script,
which the policy forbids, so `docs.html` and `docs.js` start it instead)."""
SWAGGER_FILES = {"swagger-ui-bundle.js": TYPES[".js"], "swagger-ui.css": TYPES[".css"]}

router = APIRouter(include_in_schema=False)
docs_router = APIRouter(include_in_schema=False)
"""`/docs` and its files, mounted when `CMET_DOCS` is on."""


def content_security_policy(storage_origin: str) -> str:
    extra = "" if not storage_origin else f" {storage_origin}"
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' data: blob:{extra}",
            f"media-src 'self' blob:{extra}",
            f"connect-src 'self'{extra}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _headers(storage: StorageDep) -> dict[str, str]:
    # the origin signed URLs point at, from a URL signed for nothing (signing needs no network)
    storage_origin = _origin(storage.download_url("web/origin"))
    return {
        "Content-Security-Policy": content_security_policy(storage_origin),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def _serve(name: str, storage: StorageDep) -> FileResponse:
    if name not in FILES:
        raise RequestError(ErrorCode.NOT_FOUND, "no such file")
    return FileResponse(WEB / name, media_type=FILES[name], headers=_headers(storage))


@router.get("/")
def index(storage: StorageDep) -> FileResponse:
    return _serve("index.html", storage)


@router.get("/web/{name}")
def asset(name: str, storage: StorageDep) -> FileResponse:
    return _serve(name, storage)


@docs_router.get("/docs")
def docs(storage: StorageDep) -> FileResponse:
    return _serve("docs.html", storage)


@docs_router.get("/docs/assets/{name}")
def docs_asset(name: str, storage: StorageDep) -> FileResponse:
    if name not in SWAGGER_FILES:
        raise RequestError(ErrorCode.NOT_FOUND, "no such file")
    return FileResponse(SWAGGER_UI / name, media_type=SWAGGER_FILES[name], headers=_headers(storage))
