"""The database layer: the only package that imports asyncpg.

Everything else talks to PostgreSQL through the typed functions of the modules here, which run
the named queries of ``sql/queries``; driver errors become the project's errors.
"""
