"""JSON and SSE routers: deps, parse, one service call, respond."""
