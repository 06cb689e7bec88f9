"""The admin API's endpoints (FastAPI): grant, withdraw and list consents, health.

    POST /v1/consents            grant (a bank, or "*": every institution on the platform)
    POST /v1/consents/withdraw   withdraw (one purpose, or all)
    GET  /v1/consents?uscc=...   one enterprise's consents
    GET  /v1/health              up, and the store readable (no token needed)
    GET  /docs                   the OpenAPI page (no token needed)

Every change is **one write transaction**: the consent rows, an audit record (actor
``admin-api:<recorded_by>``) and the response, stored under the caller's ``request_id`` in
``admin_requests``. A retried call with the same ``request_id`` and body gets the stored
response (header ``Idempotent-Replay: true``) and changes nothing, so a crash between the
commit and the answer loses nothing; the same ``request_id`` with another body is 409.
Validation errors are 422 naming the field, as FastAPI names its own; a missing or wrong
token is 401 and audited as a refusal; bodies over :data:`MAX_BODY` bytes are 413.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import FedCreditError, InvalidInput, StoreUnavailable
from . import audit, consent
from .admin import stored_digest, token_matches
from .config import HolderConfig, load_config
from .rejects import uscc_reason
from .store import write

log = logging.getLogger("fedcredit.holder.admin")

MAX_BODY = 16 * 1024
REQUEST_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
RequestId = Annotated[str, Field(pattern=REQUEST_ID, description="the portal's id of this "
                                 "call; a retry with the same id is answered from the store")]
Bank = Annotated[str, Field(min_length=1, max_length=64, description='a bank\'s certificate '
                            'name, or "*": every institution registered on the platform')]
Text = Annotated[str, Field(min_length=1, max_length=64)]


class GrantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: RequestId
    uscc: Annotated[str, Field(min_length=1, max_length=18)]
    bank: Bank
    purpose: Text
    granted_at: Annotated[str, Field(min_length=1, max_length=40, description="ISO 8601")]
    expires_at: Annotated[str, Field(min_length=1, max_length=40, description="ISO 8601")]
    method: Literal["written", "online_real_name"]
    evidence: Annotated[str, Field(min_length=1, max_length=consent.MAX_EVIDENCE,
                                   description="reference to the signed form or the online "
                                               "record")]
    recorded_by: Annotated[str, Field(min_length=1, max_length=consent.MAX_RECORDED_BY)]


class WithdrawBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: RequestId
    uscc: Annotated[str, Field(min_length=1, max_length=18)]
    bank: Bank
    purpose: Annotated[str | None, Field(default=None, max_length=64,
                                         description='one purpose; null or "*": all')]
    reason: Annotated[str, Field(default="", max_length=consent.MAX_REASON)]
    recorded_by: Annotated[str, Field(min_length=1, max_length=consent.MAX_RECORDED_BY)]


def unprocessable(problems: list[tuple[str, str]]) -> HTTPException:
    """422 in FastAPI's own shape: one entry per field, ``loc`` naming it."""
    return HTTPException(422, [{"loc": ["body", f or "uscc"], "msg": why, "type": "value_error"}
                               for f, why in problems])


class AdminState:
    """The store connection (one, behind a lock) and the holder's configuration."""

    def __init__(self, cfg: HolderConfig, con):
        self.cfg, self.con = cfg, con
        self.lock = threading.Lock()
        self._purposes = tuple(cfg.policy.allowed_purposes)

    def purposes(self) -> tuple[str, ...]:
        """``policy.allowed_purposes`` as ``holder.toml`` says now (as the CSV import reads
        it); the last good value while the file does not load."""
        try:
            self._purposes = tuple(load_config(self.cfg.dir).policy.allowed_purposes)
        except InvalidInput as e:
            log.warning("holder.toml does not load; using the last allowed_purposes",
                        extra={"fields": {"reason": str(e)}})
        return self._purposes

    def refuse(self, request: Request, reason: str) -> None:
        """Audit a refused call (it names the path and the peer, never the token)."""
        peer = request.client.host if request.client else "-"
        try:
            with self.lock, write(self.con):
                audit.append(self.con, actor="admin-api", operation="admin_refused",
                             detail=f"{request.method} {request.url.path}: {reason} "
                                    f"peer={peer}")
        except StoreUnavailable as e:
            log.error("admin API refusal not audited", extra={"fields": {"reason": str(e)}})
        log.warning("admin API call refused", extra={"fields": {
            "path": request.url.path, "reason": reason, "peer": peer}})


def _digest(endpoint: str, body: BaseModel) -> str:
    text = json.dumps({"endpoint": endpoint, "body": body.model_dump(mode="json")},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _replay(con, request_id: str, digest: str) -> JSONResponse | None:
    """The stored answer to ``request_id`` (inside the caller's transaction), 409 if that id
    was used for another call, None if it is new."""
    row = con.execute("SELECT response FROM admin_requests WHERE request_id = ?",
                      (request_id,)).fetchone()
    if row is None:
        return None
    stored = json.loads(row[0])
    if stored.get("request_sha256") != digest:
        raise HTTPException(409, f"request_id {request_id!r} was already used for another "
                                 f"call ({stored.get('endpoint')}); use a new request_id")
    return JSONResponse(stored["body"], status_code=stored["status"],
                        headers={"Idempotent-Replay": "true"})


def _store_answer(con, endpoint: str, request_id: str, digest: str, body: dict) -> JSONResponse:
    con.execute("INSERT INTO admin_requests (request_id, at, response) VALUES (?, ?, ?)",
                (request_id, time.time(), json.dumps({
                    "endpoint": endpoint, "request_sha256": digest, "status": 200,
                    "body": body}, ensure_ascii=False, sort_keys=True)))
    return JSONResponse(body, status_code=200)


def _pairs(pairs) -> list[dict]:
    return [{"bank": b, "purpose": p} for b, p in pairs]


class BoundedBody:
    """ASGI middleware: a body over ``limit`` bytes (declared or sent) is 413 before any
    endpoint or validation sees it; the body read is handed on whole."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        too_big = JSONResponse({"detail": f"request body over {self.limit} bytes"}, 413)
        if not declared.isdigit() or int(declared) > self.limit:
            return await too_big(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await too_big(scope, receive, send)
        handed = False

        async def replay():
            nonlocal handed
            if handed:
                return await receive()  # after the body: wait for the disconnect
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def make_app(cfg: HolderConfig, con) -> FastAPI:
    """The admin API over the store connection ``con`` (used by this app alone)."""
    state = AdminState(cfg, con)
    app = FastAPI(title="fedcredit holder admin API", version="1",
                  description="The platform portal's consent API: grant, withdraw and list "
                              "enterprises' consents. Bearer token: `fedcredit holder admin "
                              "token --dir D`.", redoc_url=None)

    app.add_middleware(BoundedBody, limit=MAX_BODY)

    @app.exception_handler(FedCreditError)
    async def holder_side(_request: Request, e: FedCreditError):
        """A store that cannot be written, an audit key gone: the holder's problem, not the
        caller's; nothing was applied (the transaction rolled back)."""
        return JSONResponse({"detail": f"the holder cannot record this now: {e}"}, 503)

    def authorised(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            state.refuse(request, "missing bearer token")
        else:
            with state.lock:
                digest = stored_digest(state.con)
            if token_matches(token.strip(), digest):
                return
            state.refuse(request, "wrong token")
        raise HTTPException(401, "a valid bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})

    Auth = Depends(authorised)

    @app.post("/v1/consents", dependencies=[Auth], summary="grant a consent")
    def grant(body: GrantBody) -> JSONResponse:
        digest, now = _digest("grant", body), time.time()
        values = body.model_dump()
        with state.lock, write(state.con):
            replay = _replay(state.con, body.request_id, digest)
            if replay is not None:
                return replay
            g, problems = consent.check_grant(state.con, values, state.purposes(), now)
            if g is None:
                raise unprocessable(problems)
            how = consent.apply_grant(state.con, g, now, f"admin-api:{body.request_id}")
            seq = audit.append(state.con, actor=f"admin-api:{g.recorded_by}",
                               operation="consent_grant", bank=g.bank, purpose=g.purpose,
                               enterprises=1, detail=f"uscc={g.uscc} {how} method={g.method} "
                               f"evidence={g.evidence} request_id={body.request_id}")
            row = consent.list_consents(state.con, bank=g.bank, uscc=g.uscc, now=now)
            row = row[row["purpose"] == g.purpose].iloc[0].to_dict()
            answer = {"request_id": body.request_id, "result": how, "consent": row,
                      "audit_seq": seq}
            return _store_answer(state.con, "grant", body.request_id, digest, answer)

    @app.post("/v1/consents/withdraw", dependencies=[Auth], summary="withdraw a consent")
    def withdraw(body: WithdrawBody) -> JSONResponse:
        digest, now = _digest("withdraw", body), time.time()
        purpose = None if body.purpose in (None, "", "*") else body.purpose.strip()
        problems = [(f, why) for f, why in (
            ("uscc", None if uscc_reason(body.uscc.strip()) == "valid" else
             f"uscc {body.uscc!r}: {uscc_reason(body.uscc.strip())}"),
            ("bank", consent.bank_problem(body.bank.strip())),
            ("reason", consent.text_problem("reason", body.reason, consent.MAX_REASON, False)),
            ("recorded_by", consent.text_problem("recorded_by", body.recorded_by,
                                                 consent.MAX_RECORDED_BY))) if why]
        if problems:
            raise unprocessable(problems)
        uscc, bank = body.uscc.strip(), body.bank.strip()
        with state.lock, write(state.con):
            replay = _replay(state.con, body.request_id, digest)
            if replay is not None:
                return replay
            try:
                w = consent.apply_withdraw(state.con, uscc, bank, purpose, now,
                                           f"admin-api:{body.request_id}")
            except consent.NoSuchConsent as e:
                raise HTTPException(404, str(e)) from None
            seq = audit.append(state.con, actor=f"admin-api:{body.recorded_by}",
                               operation="consent_revoke", bank=bank, purpose=purpose or "*",
                               enterprises=1 if w.withdrawn else 0,
                               detail=consent.withdraw_detail(uscc, w, body.reason, "")
                               + f" request_id={body.request_id}")
            answer = {"request_id": body.request_id, "withdrawn": _pairs(w.withdrawn),
                      "already_withdrawn": _pairs(w.already),
                      "from_platform": _pairs(w.from_platform),
                      "still_active": _pairs(w.still_active), "audit_seq": seq}
            return _store_answer(state.con, "withdraw", body.request_id, digest, answer)

    @app.get("/v1/consents", dependencies=[Auth], summary="one enterprise's consents")
    def list_for(uscc: Annotated[str, Query(min_length=1, max_length=18)]) -> JSONResponse:
        uscc = uscc.strip()
        if uscc_reason(uscc) != "valid":
            raise HTTPException(422, [{"loc": ["query", "uscc"], "type": "value_error",
                                       "msg": f"uscc {uscc!r}: {uscc_reason(uscc)}"}])
        with state.lock, write(state.con):
            rows = consent.list_consents(state.con, uscc=uscc)
            audit.append(state.con, actor="admin-api", operation="admin_consent_list",
                         enterprises=1, detail=f"uscc={uscc} rows={len(rows)}")
        return JSONResponse({"uscc": uscc, "consents": rows.to_dict(orient="records")})

    @app.get("/v1/health", summary="up, and the store readable")
    def health() -> JSONResponse:
        try:
            with state.lock:
                version = state.con.execute("SELECT version FROM consent_version").fetchone()[0]
        except sqlite3.Error as e:
            return JSONResponse({"status": "store unavailable", "detail": str(e)}, 503)
        return JSONResponse({"status": "ok", "holder": cfg.name, "consent_version": version})

    return app
