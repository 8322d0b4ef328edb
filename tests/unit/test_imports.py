"""What a worker or an API process imports: nothing it does not use. Evidently takes
seconds to import (only the report process does); polars holds about 47 MB of a process
(only replays, scenarios and saved drift windows use it, not scoring)."""

from __future__ import annotations

import json
import subprocess
import sys

_LOADED = """
import json, sys
from stream.cli import build_app

build_app()  # every command registered, as `fraudstream worker` and `fraudstream api` do
import stream.runtime.worker, stream.serving.app, stream.wiring

print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_a_worker_and_the_api_import_neither_evidently_nor_polars() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LOADED], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert {"stream", "faust", "river", "fastapi"} <= loaded  # (what they do import)
    assert loaded.isdisjoint({"evidently", "polars"})
