"""The Flask application factory: the model, routes, HTTP layer and telemetry."""

from __future__ import annotations

import logging

import numpy as np
from flask import Flask
from flask_swagger_ui import get_swaggerui_blueprint

from contract import INPUT_SIZE, MetadataKey
from serving.config import ServeConfig
from serving.http import (
    MAX_JSON_CONTAINERS_KEY,
    PROTOCOL_PREFIXES_KEY,
    BodyWatch,
    install_http_layer,
    refuse_late_body,
    require_one_host,
)
from serving.model import Predictor
from serving.openapi import build_openapi
from serving.page import page
from serving.protocol_routes import (
    PROTOCOL_PREFIXES,
    PROTOCOL_PROBE_PATHS,
    protocols,
)
from serving.rollout import load_predictor
from serving.routes import PROBE_PATHS, STATE_KEY, ServiceState, api
from serving.telemetry import (
    configure_logging,
    install_request_hooks,
    prepare_metric_files,
    record_model,
    report_stalled_body,
)

logger = logging.getLogger("serving.app")

DOCS_URL = "/docs"
WARM_UP_BATCH_SIZES = (1, 64)  # first calls allocate; do it before traffic
JSON_CONTAINER_SLACK = 64


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

    The server calls this with no arguments in each worker (settings from the
    environment). With `warm=False` the app starts unready, for tests.
    """
    config = config or ServeConfig.from_env()
    configure_logging(config.log_level)
    predictor = predictor or load_predictor(config.model_path, config.ort_threads)
    metadata = predictor.info.metadata
    record_model(
        metadata[MetadataKey.MODEL_NAME],
        metadata[MetadataKey.MODEL_VERSION],
        predictor.info.sha256,
    )

    app = Flask(__name__, static_folder=None)  # no static files to serve
    install_http_layer(
        app,
        config.max_content_length,
        config.app_concurrency,
        probes=PROBE_PATHS | PROTOCOL_PROBE_PATHS,
        body_watch=BodyWatch(config.timeout, report_stalled_body),
    )
    # One array per row, and a few around them, in any valid request.
    app.config[MAX_JSON_CONTAINERS_KEY] = config.max_batch_rows + JSON_CONTAINER_SLACK
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
    app.register_blueprint(protocols)
    app.register_blueprint(page)
    app.config[PROTOCOL_PREFIXES_KEY] = PROTOCOL_PREFIXES
    # Swagger UI's assets ship inside the flask-swagger-ui wheel: no CDN needed.
    app.register_blueprint(
        get_swaggerui_blueprint(
            DOCS_URL, "/openapi.json", config={"app_name": "Digits classifier"}
        )
    )
    install_request_hooks(app, write_access_log=config.access_log)
    prepare_metric_files(rule.rule for rule in app.url_map.iter_rules())
    # After the request id is stamped, so that the refusals carry one.
    app.before_request(require_one_host)
    app.before_request(refuse_late_body)
    if warm:
        warm_up(app)
    return app


def create_worker_app() -> Flask:
    """Build the app in a worker process: the server's app factory.

    A worker that cannot build its app logs why as one JSON line and exits
    with status 1 (multiprocessing would print a bare traceback). The server
    starts it again; one that fails again within seconds ends the whole
    server with status 1, so a supervisor restarts it rather than leaving a
    port that accepts connections nobody answers.
    """
    try:
        return create_app()
    except Exception as error:
        logger.exception(f"worker failed to boot: {error}")
        raise SystemExit(1) from None
