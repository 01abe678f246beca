"""Every inference endpoint, by path: one pipeline handler each, mounted per credential source."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.pipeline import Operation, handle
from relay.routes import anthropic, openai

INFERENCE_OPERATIONS: dict[str, Operation] = {
    **openai.OPERATIONS,
    **anthropic.OPERATIONS,
}


def endpoint(op: Operation, source: str):  # type: ignore[no-untyped-def]
    async def serve(request: Request) -> Response:
        return await handle(request.app.state.relay, request, op, source)

    serve.__name__ = f"{source}_{op.name}"
    return serve


def inference_routes(operations: dict[str, Operation], source: str) -> list[Route]:
    return [Route(path, endpoint(op, source), methods=["POST"]) for path, op in operations.items()]


def direct_paths(prefixes: dict[str, str]) -> dict[str, tuple[Operation, str]]:
    """Every inference endpoint's full path (`prefixes`: mount path → credential source), with
    its operation and source: what relay.app.RelayApp serves before Starlette's routing."""
    return {prefix + path: (op, source) for prefix, source in prefixes.items()
            for path, op in INFERENCE_OPERATIONS.items()}
