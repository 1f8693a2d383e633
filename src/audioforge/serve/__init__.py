"""Serving recognition: WeNet's WebSocket protocol and a one-shot HTTP endpoint (FastAPI + uvicorn).

- :func:`create_app` builds the FastAPI app around a recogniser; :class:`Server` / :func:`run_server` run it with
  uvicorn and drain open utterances on shutdown;
- :mod:`~audioforge.serve.protocol`: message validation, the connection state machine and the reply builders;
- :func:`stream_pcm`: an asyncio client of the protocol.

Names are loaded on first use, so importing the package does not import FastAPI or torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
