"""A worker process for the multi-process tests: ``python -m
tests.integration.flow_worker_proc URL WORKER_ID LEASE_SECONDS`` runs passes
until nothing has been due for a while (or it is killed)."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from tangram.clock import SYSTEM_CLOCK
from tangram.db import create_engine_from_url, session_factory
from tangram.engines.flows.worker import Worker


def main() -> None:
    url, worker_id, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    engine = create_engine_from_url(url)
    worker = Worker(session_factory(engine), SYSTEM_CLOCK, worker_id,
                    lease=timedelta(seconds=lease), batch=20)
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 3:
        if worker.run_once():
            idle_since = time.monotonic()
        else:
            time.sleep(0.05)
    engine.dispose()


if __name__ == "__main__":
    main()
