"""A server for a logistic model starts light: building the app, loading the model and
answering a prediction import none of the heavy runtimes that other families, the report
pages or training need. Checked in a fresh interpreter, so nothing this test process has
already imported can hide an import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from medserve.config import Settings
from medserve.storage import Registry
from support.servers import copy_models

# Runtimes other families, report pages or training need; Alembic only when a database
# must be migrated (this one already is).
HEAVY = ("torch", "shap", "matplotlib", "statsmodels", "lightgbm", "interpret", "alembic")

SERVE_ONE_PREDICTION = textwrap.dedent(
    """
    import asyncio, json, sys

    import httpx

    from medserve.config import Settings
    from medserve.http.app import create_app
    from medserve.security.api_keys import ApiKeyStore

    settings = Settings(home=sys.argv[1])
    app = create_app(settings)
    _, token = ApiKeyStore(app.state.registry.engine).create("predictor")
    record = json.loads(sys.argv[2])

    async def predict():
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://medserve") as client:
            return await client.post(
                "/v1/models/heart/predict",
                json={"records": [record]},
                headers={"Authorization": f"Bearer {token}"},
            )

    response = asyncio.run(predict())
    heavy = json.loads(sys.argv[3])
    print(json.dumps({
        "status": response.status_code,
        "loaded": sorted(name for name in heavy if name in sys.modules),
    }))
    """
)


def test_serving_a_logistic_model_loads_no_heavy_runtime(tmp_path, seed_home, heart_records):
    settings = Settings(home=tmp_path / "home")
    copy_models(seed_home, settings, names={"heart"})
    with Registry(settings) as registry:
        assert [v.family for v in registry.list()] == ["logistic"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSERVE_")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVE_ONE_PREDICTION,
            str(settings.home),
            json.dumps(heart_records[0]),
            json.dumps(HEAVY),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer == {"status": 200, "loaded": []}
