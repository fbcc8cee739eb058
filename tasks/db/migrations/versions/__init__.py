"""Alembic revisions of the app database (this file makes them part of the installed package)."""
