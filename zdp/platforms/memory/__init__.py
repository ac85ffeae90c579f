"""The in-process platform for tests and the default worker: runtime, router, probe and app query
in memory.
"""
