"""The local runtime: app versions as processes from their wheels (runtime), the port map and
folders (layout), the artifact store (artifacts), the Landlock launcher (confine).
"""
