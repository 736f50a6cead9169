"""Stage 6: the parts of the REST service, assembled by `api.create_app`.

- `settings`: SERVICE_* environment variables;
- `models`: the served model, loaded and verified, and how it follows `models/current`;
- `auth`: the API key, for prediction clients and the dashboard;
- `telemetry`: Prometheus metrics and the prediction log;
- `middleware`: body-size limit, request counts and latency;
- `routes`: health and model card, predict, operations, dashboard;
- `openapi`: the document, with the predict route's request built from the model's schema.
"""
