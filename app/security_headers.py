"""Security headers on every response (pages, API, static files, errors), built with the `secure` library and
added by a small pure-ASGI middleware (no response buffering, so streams such as SSE pass through untouched).

The policy allows only the studio's own files: its pages load their scripts and styles from /static (vendored
htmx and uPlot, no CDN), use no inline script or style, and are never framed.
"""

from __future__ import annotations

from secure import (
    ContentSecurityPolicy,
    PermissionsPolicy,
    ReferrerPolicy,
    Secure,
    XContentTypeOptions,
    XFrameOptions,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    ContentSecurityPolicy()
    .default_src("'self'")
    .script_src("'self'")
    .style_src("'self'")
    .img_src("'self'", "data:")
    .connect_src("'self'")
    .object_src("'none'")
    .base_uri("'self'")
    .form_action("'self'")
    .frame_ancestors("'none'")
)
HEADERS = Secure(
    csp=CSP,
    xfo=XFrameOptions().deny(),  # frame-ancestors for browsers older than CSP 2
    xcto=XContentTypeOptions().nosniff(),
    referrer=ReferrerPolicy().strict_origin_when_cross_origin(),
    permissions=PermissionsPolicy().geolocation().camera().microphone(),
).headers
ENCODED = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in HEADERS.items()]


class SecurityHeaders:
    """Adds HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in ENCODED if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
