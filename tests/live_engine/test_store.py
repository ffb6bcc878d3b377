"""The live engine's session writer against a real PostgreSQL."""

import psycopg
import pytest

from live_engine.store import SessionWriter


def test_the_session_writer_survives_a_database_that_drops_its_connection(database):
    sleeps = []
    writer = SessionWriter(database, sleep=sleeps.append)
    first = writer.run(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    assert writer.run(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0]) == first
    with database.connect(autocommit=True) as admin:  # the server ends the session's backend
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    again = writer.run(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    assert again != first and writer.reconnects == 1 and len(sleeps) == 1

    def broken(conn):
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    with pytest.raises(psycopg.OperationalError):
        SessionWriter(database, retries=2, sleep=sleeps.append).run(broken)
    writer.close()
