"""The draw-a-digit page at GET /, and its static files under /static/.

Plain HTML, CSS and JavaScript shipped in the package: no build step, no CDN.
GET / also keeps KServe V1's server liveness answer ({"status": "alive"}) for
clients that do not ask for HTML, such as the kserve SDK.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from serving.http import JSON_MIMETYPE

HTML_MIMETYPE = "text/html"
PAGE_FILE = "index.html"
# Everything the page loads or sends stays on this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

page = Blueprint("page", __name__, static_folder="static", static_url_path="/static")


@page.get("/")
def home() -> Response:
    """The page for browsers; KServe V1's liveness for API clients (`*/*`)."""
    wanted = request.accept_mimetypes.best_match([JSON_MIMETYPE, HTML_MIMETYPE])
    if wanted == HTML_MIMETYPE:
        response = page.send_static_file(PAGE_FILE)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    else:
        response = jsonify({"status": "alive"})
    response.vary.add("Accept")
    return response
