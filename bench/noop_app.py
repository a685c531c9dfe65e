"""The production app plus a no-op JSON route: the ceiling of the HTTP stack.

POST /noop reads its body the usual Flask way and answers a fixed prediction
through jsonify, so it pays for everything /predict pays for (server, WSGI,
Flask routing, request hooks, access log, metrics, JSON in and out) except
validation and the model. /predict's rate over /noop's, under the same server
settings, is the share of the stack's limit the service keeps.
`python -m bench.launch noop` serves it; never part of the service.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

from serving.app import create_app

NOOP_PATH = "/noop"
# The shape of a /predict answer, so the response costs the same to encode.
NOOP_RESPONSE = {"prediction": 0, "confidence": 1.0}


def create_noop_app() -> Flask:
    """Build the production app (settings from the environment) plus POST /noop."""
    app = create_app()

    @app.post(NOOP_PATH)
    def noop() -> Response:
        request.get_json()  # parsed and discarded, as /predict parses its body
        return jsonify(NOOP_RESPONSE)

    return app
