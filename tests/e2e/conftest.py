"""tests/e2e: one scenario, two drivers. `local` always runs (tests/kubeapi.py, the Loki double, the
job as a real process); `cluster` runs only with E2E_KUBECONFIG and E2E_LOKI_URL set (README,
"End-to-end tests"; .github/workflows/e2e.yml runs it on kind)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.drivers import Driver


@pytest.fixture(params=["local", "cluster"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    if request.param == "local":
        from tests.e2e.local import LocalDriver

        local = LocalDriver(tmp_path)
        yield local
        local.close()
        return
    if not (os.environ.get("E2E_KUBECONFIG") and os.environ.get("E2E_LOKI_URL")):
        pytest.skip("set E2E_KUBECONFIG and E2E_LOKI_URL to run against a real cluster (README)")
    from tests.e2e.cluster import ClusterDriver

    cluster = ClusterDriver(tmp_path)
    yield cluster
    cluster.close()
