"""HTTP routes: operational endpoints (health, metrics, version) and the business API."""
