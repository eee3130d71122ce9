"""The HTTP edge: a raw ASGI application, its routes, and the one place errors become responses."""
