"""POST /predict stays easy to follow: it runs code from a handful of modules."""

from __future__ import annotations

import sys

from tests.test_app import VALID

MAX_PROJECT_MODULES = 5


def test_predict_runs_code_from_at_most_five_project_modules(client):
    client.post("/predict", json={"features": VALID})  # warm: first-call paths
    modules: set[str] = set()

    def tracer(frame, event, arg):
        if event == "call":
            name = frame.f_globals.get("__name__", "")
            if name.split(".")[0] in {"serving", "contract"}:
                modules.add(name)
        return None

    sys.setprofile(tracer)
    try:
        response = client.post("/predict", json={"features": VALID})
    finally:
        sys.setprofile(None)
    assert response.status_code == 200
    assert len(modules) <= MAX_PROJECT_MODULES, sorted(modules)
    assert "serving.routes" in modules and "serving.model" in modules
