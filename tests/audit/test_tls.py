"""The audit database connection verifies the server when a CA is configured."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from zdp.compliance.audit.postgres import AUDIT_DATABASE_CA_ENV, tls_options

URL = "postgresql+psycopg://zdp:secret@db.internal:5432/audit"


def test_with_a_ca_the_server_and_its_name_are_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUDIT_DATABASE_CA_ENV, "/etc/zdp/audit-ca.pem")
    options = tls_options(URL)
    assert options == {"sslrootcert": "/etc/zdp/audit-ca.pem", "sslmode": "verify-full"}
    params = conninfo_to_dict(make_conninfo("postgresql://db.internal/audit", **options))
    assert params["sslmode"] == "verify-full" and params["host"] == "db.internal"


def test_a_url_that_names_its_sslmode_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUDIT_DATABASE_CA_ENV, "/etc/zdp/audit-ca.pem")
    assert tls_options(URL + "?sslmode=verify-ca") == {"sslrootcert": "/etc/zdp/audit-ca.pem"}


def test_without_a_ca_libpq_defaults_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUDIT_DATABASE_CA_ENV, raising=False)
    assert tls_options(URL) == {}
