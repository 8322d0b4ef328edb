"""The uvicorn server ``fraudstream api`` runs: the options it passes load the API's own
HTTP protocol, which refuses overload as the headers are read (stream.serving.protocol), on
asyncio's event loop."""

from __future__ import annotations

import uvicorn

from stream.cli.system import server_options
from stream.serving.protocol import AdmittingHttp
from stream.settings import load_settings


def test_the_api_server_runs_the_admitting_protocol_with_the_settings_limits() -> None:
    settings = load_settings()
    config = uvicorn.Config(lambda: None, **server_options(settings, "warning"))
    config.load()
    assert config.http_protocol_class is AdmittingHttp
    assert config.loop == "asyncio"  # (uvloop took in a burst's new connections slowly)
    assert (config.host, config.port, config.timeout_keep_alive) == (
        settings.api.host,
        settings.api.port,
        settings.api.keep_alive_seconds,
    )
