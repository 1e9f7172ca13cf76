"""The tutorial's proxy, kept only as the benchmark's baseline: a new client per request.

`python -m bench.naive_proxy` with the same SERVICE_* variables as the real proxy.
"""

import asyncio
import os

import httpx
import uvicorn
from fastapi import FastAPI

from src.settings import ProxySettings

app = FastAPI(title="naive proxy (benchmark baseline)")


@app.post("/predict/label")
async def predict_label(body: dict) -> dict:
    services = ProxySettings().services  # re-read per request, as the tutorial did
    async with httpx.AsyncClient() as client:  # new client, new connections, every time
        responses = await asyncio.gather(
            *(client.post(f"{urls[0]}predict", json=body) for urls in services.values())
        )
    scores = {
        name: response.json()["prediction"][0]
        for name, response in zip(services, responses, strict=True)
    }
    best = max(scores, key=scores.__getitem__)
    return {"prediction": {"proba": scores[best], "label": best}}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
