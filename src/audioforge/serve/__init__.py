"""Serving recognition: WeNet's WebSocket protocol and a one-shot HTTP endpoint (FastAPI + uvicorn).

- :func:`create_app` builds the FastAPI app around a recogniser; :class:`Server` / :func:`run_server` run it with
  uvicorn and drain open utterances on shutdown;
- :mod:`~audioforge.serve.protocol`: message validation, the connection state machine and the reply builders;
- :func:`stream_pcm`: an asyncio client of the protocol.

Names are loaded on first use, so importing the package does not import FastAPI or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "app",
    "default_static_dir": "app",
    "load_recognizer": "app",
    "open_session": "app",
    "run_server": "app",
    "session_config": "app",
    "RecognizerService": "app",
    "Server": "app",
    "Limits": "protocol",
    "ProtocolError": "protocol",
    "ProtocolMachine": "protocol",
    "Reply": "client",
    "StreamResult": "client",
    "load_pcm16": "client",
    "stream_pcm": "client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'audioforge.serve' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
