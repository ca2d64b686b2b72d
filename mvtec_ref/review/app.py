"""The review web app (Starlette, served by uvicorn): ``mvtec-ref review DATASET``.

Routes (every ``/api`` call and image needs the session token, as header ``X-Review-Token``;
images also take ``?token=`` since an ``<img>`` cannot send headers; writes accept only the
header, so a page from another origin cannot post a decision):

- ``GET /``: the page; ``GET /static/...``: its script and style (package data);
- ``GET /api/index``: every sentence as columns of small integers;
- ``GET /api/image/{n}``: image n's regions (outline polygons) and refs with their decisions;
- ``GET /img/{n}``: image n's pixels;
- ``POST /api/check`` ``{item, text}``: the sentence checks on a rewrite;
- ``POST /api/decide`` ``{item, decision, text?, keep?}``: write one decision.

Paths in URLs never reach the file system: images are addressed by index, and the static
folder is served by Starlette's ``StaticFiles``, which answers 404 to anything outside it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

STATIC = Path(__file__).parent / "static"
TOKEN_HEADER = "x-review-token"


def create_app(session, token: str, *, allowed_hosts: list[str] | None = None):
    """The Starlette application over a ``ReviewSession``; ``token`` guards every API call."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def allowed(request, *, write: bool) -> bool:
        given = request.headers.get(TOKEN_HEADER, "")
        if not given and not write:
            given = request.query_params.get("token", "")
        return secrets.compare_digest(given.encode(), token.encode())

    def refused() -> Response:
        return JSONResponse(
            {"error": "missing or wrong token; open the URL that mvtec-ref review printed"}, status_code=403
        )

    def item_of(body) -> int | None:
        item = body.get("item") if isinstance(body, dict) else None
        ok = isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(session.keys)
        return item if ok else None

    async def answer(fn, *args):
        """``fn(*args)`` in a worker thread as JSON; a toolkit error (an image moved, a full disk)
        becomes a 409 with its one line instead of a traceback in the server log."""
        from mvtec_ref.errors import MvtecRefError

        try:
            return JSONResponse(await run_in_threadpool(fn, *args))
        except MvtecRefError as error:
            return JSONResponse({"error": str(error)}, status_code=409)
        except OSError as error:
            return JSONResponse(
                {"error": f"{error.filename or 'reviews file'}: {error.strerror}"}, status_code=409
            )

    async def page(request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def index(request):
        if not allowed(request, write=False):
            return refused()
        return JSONResponse(session.index())

    async def image_view(request):
        if not allowed(request, write=False):
            return refused()
        n = request.path_params["n"]
        if n >= len(session.images["id"]):
            return JSONResponse({"error": "no such image"}, status_code=404)
        return await answer(session.image_view, n)

    async def image_file(request):
        from mvtec_ref.errors import MvtecRefError

        if not allowed(request, write=False):
            return refused()
        n = request.path_params["n"]
        if n >= len(session.images["id"]):
            return Response(status_code=404)
        try:
            data, media = await run_in_threadpool(session.image_bytes, n)
        except MvtecRefError as error:  # the source image moved or changed: say so to the page
            return JSONResponse({"error": str(error)}, status_code=404)
        return Response(data, media_type=media, headers={"Cache-Control": "no-store"})

    async def read_body(request):
        """The request's JSON body, at most MAX_REQUEST_BYTES and MAX_REQUEST_DEPTH deep; None
        when it is larger, deeper or not JSON (the caller answers 400; nothing is buffered past
        the limit)."""
        from mvtec_ref.dataset import parse_json
        from mvtec_ref.limits import MAX_REQUEST_BYTES, MAX_REQUEST_DEPTH

        declared = request.headers.get("content-length", "")
        if declared and (not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES):
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return None
        if _depth(bytes(body)) > MAX_REQUEST_DEPTH:
            return None
        try:
            return parse_json(bytes(body))
        except ValueError:
            return None

    async def check(request):
        if not allowed(request, write=True):
            return refused()
        body = await read_body(request)
        item = item_of(body)
        if item is None or not isinstance(body.get("text"), str):
            return JSONResponse({"error": "expected {item: int, text: str}"}, status_code=400)
        text = " ".join(body["text"].split())
        if not text:
            return JSONResponse({"checks": [{"check": "text", "ok": False, "reason": "empty sentence"}]})
        return await answer(lambda: {"checks": session.check(item, text)})

    async def decide(request):
        if not allowed(request, write=True):
            return refused()
        body = await read_body(request)
        item = item_of(body)
        decision = body.get("decision") if isinstance(body, dict) else None
        if item is None or decision not in ("accept", "reject", "rewrite", "clear"):
            return JSONResponse(
                {"error": "expected {item: int, decision: accept|reject|rewrite|clear}"}, status_code=400
            )
        text = body.get("text", "")
        if not isinstance(text, str):
            return JSONResponse({"error": "text must be a string"}, status_code=400)
        keep = body.get("keep", False)
        if not isinstance(keep, bool):  # "no" is a true value in Python: never guess
            return JSONResponse({"error": "keep must be true or false"}, status_code=400)
        return await answer(session.decide, item, decision, text, keep)  # a refused rewrite is an answer

    routes = [
        Route("/", page),
        Route("/api/index", index),
        Route("/api/image/{n:int}", image_view),
        Route("/img/{n:int}", image_file),
        Route("/api/check", check, methods=["POST"]),
        Route("/api/decide", decide, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)


def _depth(body: bytes) -> int:
    """How deep brackets nest in a JSON text (brackets inside strings are skipped), read before
    parsing: a body of ``[[[[...`` is refused without recursing into it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def serve(session, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None, on_ready=None):
    """Run the app until interrupted; ``on_ready(url)`` is called once the port is bound.

    The socket is bound here (``port=0`` picks a free one) so that a busy port is an OSError
    before anything is printed.
    """
    import socket

    import uvicorn

    token = token or secrets.token_urlsafe(24)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)  # connections wait in the queue until uvicorn accepts them
    port = sock.getsockname()[1]
    loopback = host in ("127.0.0.1", "localhost", "::1")
    hosts = [f"{h}" for h in ("127.0.0.1", "localhost", "[::1]")] if loopback else None
    app = create_app(session, token, allowed_hosts=hosts)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    if on_ready is not None:
        on_ready(f"http://{shown}:{port}/?token={token}")
    server.run(sockets=[sock])
