"""The operations contract against the example app: what ops_kit promises any app that wires
it as ops_kit_example.py does. finance-trading and pharma-manufacturing run the same contract
against themselves (their test_*_app.py)."""

from __future__ import annotations

import pytest
from ops_kit.testing import OpsContract
from ops_kit_example import DRILL_KEY, Settings


class TestOperations(OpsContract):
    APP = "ops-kit-example"
    API_PATH = "/api/items/a-1"
    API_ROUTE = "/api/items/{item_id}"

    def drill_headers(self) -> dict[str, str]:
        return {"X-Drill-Key": DRILL_KEY}


def test_the_settings_read_the_drill_variables() -> None:
    settings = Settings.from_env(
        {
            "APP_FAULT_ERROR_RATE": "0.25",
            "APP_FAULT_LATENCY_MS": "40",
            "APP_FAULT_CRASH_ON_START": "Yes",
            "APP_FAULT_READY_DELAY_S": "1.5",
            "APP_DRILL_ENDPOINT": " on ",
            "APP_DRAIN_DELAY_S": "0.2",
        }
    )
    assert (settings.fault_error_rate, settings.fault_latency_ms) == (0.25, 40)
    assert settings.fault_crash_on_start and settings.drill_endpoint
    assert (settings.fault_ready_delay_s, settings.drain_delay_s) == (1.5, 0.2)
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APP_FAULT_ERROR_RATE": "1.5"}, "APP_FAULT_ERROR_RATE must be between 0.0 and 1.0"),
        (
            {"APP_DRILL_ENDPOINT": "1", "APP_ENV": "production"},
            "APP_DRILL_ENDPOINT is refused in production: drills break the app on purpose",
        ),
    ],
)
def test_unsafe_drill_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)
