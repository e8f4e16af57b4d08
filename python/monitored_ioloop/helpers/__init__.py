"""Helpers for frameworks (``helpers.fastapi``); each imports its framework only if used."""
