"""The Flask application: routes and error handlers."""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from serving.config import ServeConfig
from serving.errors import InvalidJSON, ServingError, UnsupportedMediaType, error_body
from serving.json_provider import OrjsonProvider
from serving.model import Predictor
from serving.schemas import PredictRequestSchema

logger = logging.getLogger(__name__)

PREDICTOR_KEY = "predictor"


def read_json_body() -> object:
    """Parse the request body as strict JSON, or raise a 4xx ServingError."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            "Content-Type must be application/json, "
            f"got {request.mimetype or 'nothing'!r}"
        )
    try:
        return orjson.loads(request.get_data(cache=False))
    except orjson.JSONDecodeError as error:
        raise InvalidJSON(f"request body is not valid JSON: {error}") from None


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
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")


def register_routes(app: Flask) -> None:
    """Attach the prediction route."""
    predict_request = PredictRequestSchema()

    @app.post("/predict")
    def predict() -> Response:
        body = predict_request.load(read_json_body())
        predictor: Predictor = app.extensions[PREDICTOR_KEY]
        (result,) = predictor.predict(body["features"].reshape(1, -1))
        return jsonify(result)


def create_app(
    config: ServeConfig | None = None, predictor: Predictor | None = None
) -> Flask:
    """Build the app; load the model from `config` unless a predictor is given."""
    config = config or ServeConfig.from_env()
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config["SERVE"] = config
    app.extensions[PREDICTOR_KEY] = predictor or Predictor.load(config.model_path)
    register_error_handlers(app)
    register_routes(app)
    return app
