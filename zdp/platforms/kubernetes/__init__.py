"""The Kubernetes backends: the runtime (a Deployment and Service per version), the gateway-api and
istio routers, and what they share (api, config, render, rollout, routes).
"""
