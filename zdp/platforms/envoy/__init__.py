"""The Envoy router: weights in route files Envoy watches (router), its bootstrap and routes
(config), the process (process).
"""
