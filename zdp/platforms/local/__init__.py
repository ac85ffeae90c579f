"""The local runtime: app versions as processes from their wheels (runtime), the artifact
store (artifacts), the Landlock launcher (confine). The port map and folders it shares with
the Envoy router are zdp/platforms/layout.py.
"""
