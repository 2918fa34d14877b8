"""The HTTP gateway: application, routes and server."""

from .app import Gateway, build_app
from .server import run, serve

__all__ = ["Gateway", "build_app", "run", "serve"]
