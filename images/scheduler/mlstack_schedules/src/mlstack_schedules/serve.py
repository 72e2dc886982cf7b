"""The engine's start (the scheduler image's command): in team mode its database, on the team's
PostgreSQL, made at the first start by its own role (``scheduler``, which the postgres image
makes with CREATEDB); then Prefect's server in place of this process."""

from __future__ import annotations

import asyncio
import os
import sys


async def ensure_database(url: str) -> bool:
    """Create the database a ``postgresql+asyncpg://`` URL names when it does not exist.

    Returns:
        Whether it was created.

    Raises:
        OSError, asyncpg.PostgresError: PostgreSQL is unreachable or refuses the role.
    """
    import asyncpg
    from sqlalchemy.engine import make_url

    where = make_url(url)
    connection = await asyncpg.connect(
        user=where.username,
        password=where.password,
        host=where.host,
        port=where.port or 5432,
        database="postgres",
    )
    try:
        found = await connection.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", where.database
        )
        if found:
            return False
        quoted = '"' + where.database.replace('"', '""') + '"'
        await connection.execute(f"CREATE DATABASE {quoted}")
        return True
    finally:
        await connection.close()


def main() -> None:
    """Make the team database if needed, then exec ``prefect server start``."""
    url = os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL", "")
    if url.startswith("postgresql"):
        try:
            if asyncio.run(ensure_database(url)):
                print("scheduler: created its database on the team's PostgreSQL", flush=True)
        except Exception as error:  # noqa: BLE001 - one line, then the restart policy retries
            print(f"error: the engine's database on PostgreSQL: {error}", file=sys.stderr)
            sys.exit(1)
    prefect = os.path.join(os.path.dirname(sys.executable), "prefect")
    os.execv(prefect, [prefect, "server", "start"])
