import re

from openapi_spec_validator import validate
from sklearn.datasets import load_digits

from serving.validation import EXAMPLE_FEATURES

# Swagger UI and the page's files (README): static assets, not API routes.
DOCUMENTED_ELSEWHERE = {"/docs/", "/docs/<path:path>", "/static/<path:filename>"}


def test_openapi_document_is_valid(client):
    document = client.get("/openapi.json").get_json()
    validate(document)
    assert document["openapi"].startswith("3.")


def test_openapi_paths_match_the_routes(app, client):
    document = client.get("/openapi.json").get_json()
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = {
        (re.sub(r"<(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.rule not in DOCUMENTED_ELSEWHERE
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == served


def test_request_schemas_carry_the_contract(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    features = schemas["PredictRequest"]["properties"]["features"]
    assert features["minItems"] == features["maxItems"] == 64
    assert features["items"] == {"type": "number", "minimum": 0.0, "maximum": 16.0}
    instances = schemas["PredictBatchRequest"]["properties"]["instances"]
    assert instances["maxItems"] == 1024 and instances["items"]["minItems"] == 64
    assert schemas["PredictRequest"]["additionalProperties"] is False
    assert set(schemas["PredictResponse"]["required"]) == {"prediction", "confidence"}


def test_documented_example_is_a_real_digit_the_model_gets_right(client):
    assert EXAMPLE_FEATURES == load_digits().data[0].astype(int).tolist()
    response = client.post("/predict", json={"features": EXAMPLE_FEATURES})
    assert response.get_json()["prediction"] == 0


def test_docs_page_and_its_assets_are_served_locally(client):
    page = client.get("/docs/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html
    absolute_urls = re.findall(r"https?://[^\s\"']+", html)
    assert all(url.startswith("http://localhost/") for url in absolute_urls)  # no CDN
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        response = client.get(f"/docs/{asset}")
        assert response.status_code == 200 and len(response.data) > 10_000
        response.close()


def test_real_responses_match_their_documented_schemas(client):
    from serving.schemas import (
        ErrorSchema,
        ModelInfoSchema,
        PredictBatchResponseSchema,
        PredictResponseSchema,
        StatusSchema,
    )

    row = {"features": EXAMPLE_FEATURES}
    checks = [
        (PredictResponseSchema(), client.post("/predict", json=row)),
        (
            PredictBatchResponseSchema(),
            client.post("/predict/batch", json={"instances": [EXAMPLE_FEATURES] * 3}),
        ),
        (StatusSchema(), client.get("/healthz")),
        (StatusSchema(), client.get("/readyz")),
        (ModelInfoSchema(), client.get("/model")),
        (ErrorSchema(), client.post("/predict", json={"features": [1]})),
        (ErrorSchema(), client.get("/nowhere")),
    ]
    for schema, response in checks:
        assert schema.validate(response.get_json()) == {}, response.request.path
