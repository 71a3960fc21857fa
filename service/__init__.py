"""The HTTP service behind server_fastapi.py: settings, request/response schemas, middleware and the work."""
