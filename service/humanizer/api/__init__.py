"""The HTTP API: ``create_app()`` (FastAPI), ``serve()`` (uvicorn), ``python -m humanizer.api``."""
