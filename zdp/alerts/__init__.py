"""Rollback triggers from alerts: firing alerts pause or abort the running deployment.

- `policy`: the alert policy (data: which alert pauses, which aborts), Alertmanager's webhook
  payload, and the pure judgement of one alert against the policy.
- `seen`: the alerts already acted on, kept under $ZDP_HOME across restarts (bounded).
- `auth`: the bearer token Alertmanager presents, and the receiver's own signing identity.
- `receiver`: acting on a payload: find the running deployment, sign, send, record.
- `server`: the HTTP endpoint (`zdp alert-receiver`).
"""
