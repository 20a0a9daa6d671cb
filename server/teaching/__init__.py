"""Visitors teach the network: their labelled drawings, stored with consent in a database.

``database`` opens the engine (SQLite in ``DATA_DIR`` by default, any SQLAlchemy
async URL otherwise), ``schema`` declares the tables, ``migrate`` brings a
database to the newest Alembic revision, ``drawings`` stores and forgets
drawings, ``teacher`` answers a visitor's ``teach`` and ``forget`` messages
(docs/protocol.md, "teach").
"""
