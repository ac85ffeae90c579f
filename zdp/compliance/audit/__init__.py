"""The audit log: the store and its checks (log), the entry and checkpoint format (format), the
JSON-lines file (jsonl), PostgreSQL (postgres, postgres_verify), and the anchors outside the log
(anchors).
"""
