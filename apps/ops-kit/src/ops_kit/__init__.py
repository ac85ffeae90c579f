"""ops_kit: what zero-downtime-pipeline relies on from any app it deploys, in one place.

- `readiness`: `ReadinessMonitor`, the app's blocking check refreshed in the background, so
  that `/healthz/ready` answers from a cached verdict;
- `lifecycle`: `Lifecycle`, starting, ready, draining;
- `operations`: `/healthz/live`, `/healthz/ready`, `/version`, `/metrics`, `POST /drill/faults`
  (`drill_router`, behind the app's own access check), and `install`, which wires them;
- `telemetry`: request metrics and one JSON log line per request;
- `faults`: drill faults (`APP_FAULT_*`) for rehearsals;
- `serve`: uvicorn with drain on SIGTERM, and the `python -m <pkg>` arguments;
- `logs`: JSON logs on stdout;
- `settings`: `DrillSettings`, the `APP_FAULT_*`, drain and drill-endpoint settings;
- `testing` (tests only: needs pytest and httpx): fixtures and the contract an app's suite runs.

It imports nothing from the engine, and nothing from the apps.
"""

__version__ = "1.0.0"
