"""The Flask application factory: state, routes, hooks and error handlers."""

from __future__ import annotations

import logging

import numpy as np
import orjson
from flask import Flask, Response, jsonify, request
from flask_swagger_ui import get_swaggerui_blueprint
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from contract import INPUT_SIZE, MetadataKey
from serving.config import ServeConfig
from serving.errors import ServingError, error_body
from serving.json_provider import OrjsonProvider
from serving.logs import configure_logging
from serving.metrics import record_model
from serving.model import Predictor
from serving.observability import current_request_id, install_request_hooks
from serving.openapi import build_openapi
from serving.routes import STATE_KEY, ServiceState, api

logger = logging.getLogger("serving.app")

DOCS_URL = "/docs"
WARM_UP_BATCH_SIZES = (1, 64)  # first calls allocate; do it before traffic


def error_response(status: int, code: str, message: str, details=None) -> Response:
    """Render the one error shape with `status`."""
    response = jsonify(error_body(code, message, details))
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """Turn every failure into the JSON error shape; never HTML, never a trace."""

    @app.errorhandler(ServingError)
    def handle_serving_error(error: ServingError) -> Response:
        return error_response(error.status, error.code, error.message, error.details)

    @app.errorhandler(ValidationError)
    def handle_validation_error(error: ValidationError) -> Response:
        details = error.messages if isinstance(error.messages, dict) else {}
        return error_response(
            422, "invalid_request", "request body failed validation", details
        )

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException) -> Response:
        response = error.get_response()  # keeps headers such as Allow on a 405
        code = (error.name or "http_error").lower().replace(" ", "_")
        body = error_body(code, error.description or error.name)
        response.set_data(orjson.dumps(body))
        response.content_type = "application/json"
        return response

    @app.errorhandler(Exception)
    def handle_unexpected_error(error: Exception) -> Response:
        logger.exception(
            "unhandled error",
            exc_info=error,
            extra={
                "request_id": current_request_id(),
                "method": request.method,
                "path": request.path,
            },
        )
        return error_response(500, "internal_error", "internal server error")


def warm_up(app: Flask) -> None:
    """Run first inferences, then mark the worker ready; stay unready on failure."""
    service: ServiceState = app.extensions[STATE_KEY]
    try:
        for rows in WARM_UP_BATCH_SIZES:
            service.predictor.predict(np.zeros((rows, INPUT_SIZE), np.float32))
    except Exception as error:  # a broken model must not take liveness down
        service.not_ready_reason = f"warm-up failed: {error}"
        logger.exception("warm-up failed")
        return
    service.ready = True


def create_app(
    config: ServeConfig | None = None,
    predictor: Predictor | None = None,
    warm: bool = True,
) -> Flask:
    """Build the app; load the model from `config` unless a predictor is given.

    With `warm=False` the app starts unready, for tests of the readiness flip.
    """
    config = config or ServeConfig.from_env()
    configure_logging(config.log_level)
    predictor = predictor or Predictor.load(config.model_path, config.ort_threads)
    metadata = predictor.info.metadata
    record_model(
        metadata[MetadataKey.MODEL_NAME],
        metadata[MetadataKey.MODEL_VERSION],
        predictor.info.sha256,
    )

    app = Flask(__name__, static_folder=None)  # no static files to serve
    # Without this, Flask answers OPTIONS itself with an empty HTML 200.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = config.max_content_length
    app.extensions[STATE_KEY] = ServiceState(
        predictor=predictor,
        max_batch_rows=config.max_batch_rows,
        metrics_dir=config.metrics_dir,
        openapi=build_openapi(
            metadata[MetadataKey.MODEL_VERSION], config.max_batch_rows
        ),
        model_description=predictor.info.describe(),
    )
    app.register_blueprint(api)
    # Swagger UI's assets ship inside the flask-swagger-ui wheel: no CDN needed.
    app.register_blueprint(
        get_swaggerui_blueprint(
            DOCS_URL, "/openapi.json", config={"app_name": "Digits classifier"}
        )
    )
    install_request_hooks(app, write_access_log=config.access_log)
    register_error_handlers(app)
    if warm:
        warm_up(app)
    return app
