"""``audioforge serve`` (WeNet-protocol recognition server) and ``audioforge client`` (its streaming client)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from . import app

DEFAULT_BUNDLE = "asr"


def resolve_recognizer(bundle: str, backend: str = "torch") -> Any:
    """The recogniser that ``audioforge serve`` runs.

    Parameters
    ----------
    bundle
        A bundle folder or shipped name (torch), or an ONNX export folder (onnx, see
        :func:`audioforge.asr.export_recognizer_onnx`).
    backend
        ``"torch"`` or ``"onnx"``.

    Raises
    ------
    AudioForgeError
        Unknown backend, missing bundle (with how to pass ``--bundle``), or an unusable folder.
    """
    from ..bundle import available_bundles
    from ..errors import CheckpointError, InvalidParameterError

    if backend not in ("torch", "onnx"):
        raise InvalidParameterError(f"--backend must be 'torch' or 'onnx', got {backend!r}")
    path = Path(bundle)
    if bundle == DEFAULT_BUNDLE and not path.is_dir() and DEFAULT_BUNDLE not in available_bundles():
        raise CheckpointError(
            f"no '{DEFAULT_BUNDLE}' bundle ships with this version of audioforge yet; pass a trained one with "
            "--bundle PATH (a folder with config.json and model.safetensors, as Recognizer.to_bundle().save(PATH) "
            "writes), or --backend onnx --bundle EXPORT_FOLDER (written by audioforge.asr.export_recognizer_onnx)"
        )
    if backend == "onnx":
        if not (path / "asr_config.json").is_file():
            raise CheckpointError(
                f"{bundle} is not an ASR ONNX export (no asr_config.json); export one with "
                "audioforge.asr.export_recognizer_onnx(Recognizer.from_bundle(BUNDLE), FOLDER) or use --backend torch"
            )
        from ..asr.onnx_infer import OnnxRecognizer

        return OnnxRecognizer(path, intra_op_num_threads=1)
    from ..asr.infer import Recognizer

    return Recognizer.from_bundle(bundle)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 exposes the server to the network)."),
    port: int = typer.Option(10086, help="TCP port (WeNet's default 10086)."),
    bundle: str = typer.Option(DEFAULT_BUNDLE, help="ASR bundle folder or shipped name (onnx: an export folder)."),
    backend: str = typer.Option("torch", help="Runtime: torch or onnx."),
    workers: int = typer.Option(0, help="Decoding threads (0: one per CPU core, at most 8)."),
    static: Path | None = typer.Option(None, help="Folder served at /web (default: the repository's web/ if any)."),
    max_utterance_s: float = typer.Option(600.0, help="Most seconds of audio per connection."),
    idle_timeout_s: float = typer.Option(30.0, help="Close connections silent for this long."),
    max_connections: int = typer.Option(64, help="Concurrent WebSocket streams."),
    shutdown_grace_s: float = typer.Option(5.0, help="On SIGTERM, how long open utterances may go on."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve speech recognition: WeNet's WebSocket protocol at ws://HOST:PORT/, POST /transcribe, GET /health."""
    from ..serve.app import create_app, run_server
    from ..serve.protocol import Limits

    limits = Limits(
        max_utterance_s=max_utterance_s,
        idle_timeout_s=idle_timeout_s,
        max_connections=max_connections,
        shutdown_grace_s=shutdown_grace_s,
    )
    recognizer = resolve_recognizer(bundle, backend)
    application = create_app(recognizer, limits=limits, workers=workers or None, static_dir=static or True)
    static_dir = application.state.static_dir
    typer.echo(f"audioforge serve: ws://{host}:{port}/ ({type(recognizer).__name__}, bundle {bundle})")
    if static_dir is not None:
        typer.echo(f"static files from {static_dir} at http://{host}:{port}/web/")
    run_server(application, host, port, log_level=log_level)


@app.command()
def client(
    file: Path = typer.Argument(..., help="Audio file (any rate; resampled to 16 kHz mono)."),
    url: str = typer.Option("ws://127.0.0.1:10086/", help="Server URL."),
    nbest: int = typer.Option(1, help="n-best size to ask for."),
    continuous: bool = typer.Option(False, "--continuous/--no-continuous", help="Continuous decoding."),
    realtime: bool = typer.Option(True, "--realtime/--no-realtime", help="Send 0.5 s chunks in real time."),
    chunk_s: float = typer.Option(0.5, help="Seconds of audio per message."),
) -> None:
    """Stream FILE to a WeNet-protocol server; print partial results as they come and the final ones."""
    from ..serve.client import Reply, load_pcm16, stream_pcm

    pcm = load_pcm16(file)

    def show(reply: Reply) -> None:
        if reply.type == "partial_result":
            typer.echo(f"partial: {reply.text}")
        elif reply.type == "final_result":
            typer.secho(f"final:   {reply.text}", bold=True)
        elif reply.type == "failed":
            typer.secho(f"failed:  {reply.data.get('message')}", err=True, fg=typer.colors.RED)

    timeout = 60.0 + 2.0 * pcm.shape[0] / 16000
    result = asyncio.run(
        stream_pcm(
            url,
            pcm,
            chunk_s=chunk_s,
            realtime=realtime,
            nbest=nbest,
            continuous_decoding=continuous,
            on_reply=show,
            timeout_s=timeout,
        )
    )
    if not result.speech_end:
        raise typer.Exit(1)
