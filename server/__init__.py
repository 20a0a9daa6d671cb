"""The live explanation server: raster, explanation engine, protocol, sessions, app."""
