"""/docs (Swagger UI 5) and /redoc served by the process itself, for machines without internet.

FastAPI's own pages load their scripts from a public CDN and their favicon from FastAPI's
site. Here the assets come from the fastapi-offline package, and a Content-Security-Policy
keeps the pages to their own origin: ReDoc always asks a CDN for its footer logo, and
Swagger UI can be told to fetch any URL, which the policy turns into no request at all.
"""

from collections.abc import Callable
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        # The pages start their bundle with an inline script; both style inline.
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        # ReDoc's search runs in a worker it makes from a blob.
        "worker-src 'self' blob:",
        "connect-src 'self'",
    )
)
# Swagger UI's online validator badge would otherwise be fetched for some documents.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def _own_origin_page(request: Request, build: Callable[[str], HTMLResponse]) -> HTMLResponse:
    """The page `build` makes for the app's root path, kept to its own origin."""
    page = build(request.scope.get("root_path", ""))
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def add_offline_docs(app: FastAPI) -> None:
    """Serve /docs and /redoc from packaged assets; the app is made with docs_url=None."""
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS_PATH, StaticFiles(directory=str(assets)), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        return _own_origin_page(
            request,
            lambda root: get_swagger_ui_html(
                openapi_url=root + app.openapi_url,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
                swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
            ),
        )

    async def redoc(request: Request) -> HTMLResponse:
        return _own_origin_page(
            request,
            lambda root: get_redoc_html(
                openapi_url=root + app.openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
                with_google_fonts=False,
            ),
        )

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
