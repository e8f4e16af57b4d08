"""A FastAPI service on the native loop (see app.py)."""
