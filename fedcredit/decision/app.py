"""The bank's decision service over HTTP JSON (FastAPI): what a loan-origination system calls.

    POST /v1/score    {"enterprises": [{"uscc": "...", "features": {...}}, ...]}
    GET  /v1/health   the process is up
    GET  /v1/ready    the holder answers (every holder of the model; 503 while one is away)
    GET  /docs        the OpenAPI page

Bounded: at most ``max_batch`` enterprises and ``max_body_bytes`` per request (413). A
malformed request is 422 naming the field; the holder being away is 503 with a retry hint;
every answer is written to the decision log (who asked, model, scores, never a holder value).
"""
from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .. import __version__
from ..errors import FedCreditError, InvalidInput, PeerUnavailable
from ..protocol import messages as pm
from .log import DecisionLog
from .scorer import Scorer


class Enterprise(BaseModel):
    uscc: str = Field(min_length=1, max_length=64, description="the enterprise's id (USCC)")
    features: dict[str, float | int | str | None] = Field(
        default_factory=dict, description="the bank's features, by the model's names; a "
                                          "missing one is a missing value")


class ScoreRequest(BaseModel):
    enterprises: list[Enterprise] = Field(min_length=1)


class Reason(BaseModel):
    feature: str
    contribution: float


class Decision(BaseModel):
    uscc: str
    probability: float | None = Field(description="probability of default; null when the "
                                                  "model refuses an uncovered enterprise")
    points: float | None
    grade: str | None
    holder_covered: bool = Field(description="the holder had data and a current consent")
    reasons: list[Reason]
    model_id: str


class ScoreResponse(BaseModel):
    model_id: str
    decisions: list[Decision]
    seconds: float


def create_app(scorer: Scorer, log: DecisionLog, *, max_batch: int = 1000,
               max_body_bytes: int = 4 << 20) -> FastAPI:
    app = FastAPI(title="fedcredit decision service", version=__version__,
                  description="Scores enterprises with a federated credit model and the "
                              "credit-data holder; answers probability, grade and reasons.")

    @app.middleware("http")
    async def bounded(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > max_body_bytes):
            return JSONResponse({"detail": f"the request body exceeds {max_body_bytes} bytes"},
                                status_code=413)
        return await call_next(request)

    @app.get("/v1/health")
    def health() -> dict:
        return {"status": "up", "model_id": scorer.model_id}

    @app.get("/v1/ready")
    def ready() -> Any:
        try:
            for channel in scorer.channels:
                channel.call(pm.Ping())
        except FedCreditError as e:
            return JSONResponse({"status": "holder unavailable", "detail": str(e)[:200]},
                                status_code=503)
        return {"status": "ready", "model_id": scorer.model_id}

    @app.post("/v1/score", response_model=ScoreResponse)
    def score(body: ScoreRequest, request: Request) -> Any:
        if len(body.enterprises) > max_batch:
            raise HTTPException(413, f"{len(body.enterprises)} enterprises in one request; "
                                     f"at most {max_batch}")
        t0 = time.perf_counter()
        try:
            decisions = scorer.score([e.model_dump() for e in body.enterprises])
        except PeerUnavailable as e:
            raise HTTPException(503, f"the holder is unavailable ({str(e)[:120]}); retry "
                                     "later", headers={"Retry-After": "5"}) from None
        except InvalidInput as e:
            raise HTTPException(422, str(e)) from None
        except FedCreditError as e:  # the holder refused (policy, consent rules, caps)
            raise HTTPException(409, f"{type(e).__name__}: {e}") from None
        seconds = time.perf_counter() - t0
        who = request.client.host if request.client else ""
        log.write(caller=request.headers.get("x-caller", who), model_id=scorer.model_id,
                  decisions=decisions, seconds=seconds)
        return {"model_id": scorer.model_id, "decisions": decisions, "seconds": seconds}

    return app
