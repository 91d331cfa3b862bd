"""Engines die with wlm, even when wlm is killed with SIGKILL and cannot clean up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.integration.local.localhelpers import gone

pytestmark = pytest.mark.local

ROOT = Path(__file__).resolve().parents[3]

# A wlm-like parent: a LocalManager on the event loop, one model loaded, then it waits.
PARENT = """
import asyncio, sys
from pathlib import Path
from wlm.config import Settings
from wlm.local.manager import LocalManager

async def main() -> None:
    settings = Settings(models_dir=Path(sys.argv[1]), local_threads=1, local_ctx_size=512,
                        local_parallel=1)
    manager = LocalManager(settings)
    await manager.start()
    await manager.load("tiny-a")
    print(manager.instances()[0].pid, flush=True)
    await asyncio.Event().wait()

if sys.argv[2] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_sigkilled_parent_leaves_no_engine_behind(models_dir: Path, loop: str) -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PARENT,
        str(models_dir),
        loop,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert parent.stdout is not None
    line = await asyncio.wait_for(parent.stdout.readline(), 30)
    engine_pid = int(line)
    assert not await gone(engine_pid, timeout=0.1)  # it runs while its parent lives

    parent.send_signal(signal.SIGKILL)
    await parent.wait()

    assert await gone(engine_pid)
