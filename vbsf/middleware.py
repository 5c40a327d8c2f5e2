"""Security headers Django does not set by itself."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


# Everything the console serves comes from itself: no scripts, styles or
# fonts from other hosts. htmx is vendored under static/.
def content_security_policy() -> str:
    # Forms post to the console only; "Authorize at Salesforce" and "Log in
    # with Salesforce" redirect to a Salesforce login host (form-action
    # covers redirects after a submit), or to the simulator in the demo.
    form_action = " ".join(["'self'", *settings.SALESFORCE_BROWSER_HOSTS])
    if simulator := getattr(settings, "SALESFORCE_SIMULATOR_URL", ""):
        form_action += f" {simulator}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            f"form-action {form_action}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
        ]
    )


class SecurityHeadersMiddleware:
    """Adds CSP and related headers to every response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault(
            "Content-Security-Policy", content_security_policy()
        )
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=()")
        if request.user.is_authenticated if hasattr(request, "user") else False:
            # Pages of a signed-in user hold customer data: never cache them.
            response.headers.setdefault("Cache-Control", "no-store")
        return response
