"""Assemble the MCPServer: tools, resources, prompt, argument checking, background loading."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from pydantic import ValidationError

from mcp_server import info, resources
from mcp_server.runtime import Backend
from mcp_server.tools import build_tools, one_line

MAX_ERRORS_SHOWN = 4


def describe(exc: ValidationError) -> str:
    """A pydantic error as one line naming each bad argument (the rejected values are not
    echoed back: they may be huge or deeply nested)."""
    parts = []
    for err in exc.errors()[:MAX_ERRORS_SHOWN]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = exc.error_count() - MAX_ERRORS_SHOWN
    if more > 0:
        parts.append(f"and {more} more")
    return one_line("; ".join(parts), 500)


class ArgumentCheck:
    """Rewrite the SDK's multi-line pydantic report for rejected tool arguments into one line
    naming each bad argument. The tool never ran, so re-validating (same model, same verdict)
    after the fact is what tells a validation failure from a tool's own error."""

    def __init__(self, tools: list[Tool]) -> None:
        self._tools = {t.name: t for t in tools}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
                       ) -> HandlerResult:
        result = await call_next(ctx)
        if (ctx.method != "tools/call" or not isinstance(result, dict)
                or not result.get("isError") or not isinstance(ctx.params, Mapping)):
            return result
        tool = self._tools.get(str(ctx.params.get("name")))
        args = ctx.params.get("arguments")
        if tool is None or not (args is None or isinstance(args, Mapping)):
            return result
        try:
            tool.fn_metadata.validate_arguments(dict(args or {}))
        except ValidationError as exc:
            message = describe(exc)
        except RecursionError:
            message = "arguments nested too deeply"
        else:
            return result
        text = f"invalid arguments for {tool.name}: {message}"
        return {**result, "content": [{"type": "text", "text": text}]}


def build_server(runtime: Backend) -> MCPServer:
    tools = build_tools(runtime)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict[str, Any]]:
        runtime.start()  # the session has started: open the store and load the model now
        yield {}

    server: MCPServer = MCPServer(
        info.NAME,
        title=info.TITLE,
        version=info.VERSION,
        instructions=info.INSTRUCTIONS,
        tools=tools,
        lifespan=lifespan,
        log_level="WARNING",
        middleware=[ArgumentCheck(tools)],
    )
    resources.register(server, runtime)
    return server
