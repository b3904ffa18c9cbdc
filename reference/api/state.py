"""What an app made by `create_app` keeps on `app.state`, for its routes, handlers and lifespan."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI

from reference.api.reads import Reads
from reference.errors import SplitdbError
from reference.requestlog import RequestLogWriter
from reference.runtime import Runtime

__all__ = ["AppState", "state_of"]


@dataclass
class AppState:
    runtime: Runtime
    writer: RequestLogWriter
    reads: Reads
    drain_timeout: float
    close_store: Callable[[], None]  # after the writer stopped
    announced: threading.Event = field(default_factory=threading.Event)
    docs_page: str | None = None  # /docs, rendered on first request


def state_of(app: FastAPI) -> AppState:
    state = getattr(app.state, "splitdb", None)
    if not isinstance(state, AppState):
        raise SplitdbError("this app was not made by reference.api.create_app")
    return state
