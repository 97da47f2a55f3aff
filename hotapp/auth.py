"""Who is asking and what they may do: permissions for the pages, bearer tokens and JSON errors
for the API, and a CSRF failure view that answers the API in JSON.

Two Django permissions: `hotapp.view_run` (Django's own "Can view run") to see anything, pages,
API and websocket alike; `hotapp.operate_run` to retry, rerun, cancel, message tasks and pause
schedules. Superusers have both.
"""

from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.views import csrf
from django.views.decorators.csrf import csrf_exempt

from hotapp.models import ApiToken

VIEW = "hotapp.view_run"
OPERATE = "hotapp.operate_run"
PERMISSION_NAMES = {VIEW: "Can view run", OPERATE: "Can retry, rerun and cancel runs"}

# last_used_at is written at most this often per token: not one UPDATE per API call.
LAST_USED_PRECISION = timedelta(minutes=1)


# Pages ---------------------------------------------------------------------------------------


def forbidden_page(request: HttpRequest, permission: str) -> HttpResponse:
    return render(
        request,
        "hotapp/forbidden.html",
        {"permission": permission, "permission_name": PERMISSION_NAMES[permission]},
        status=403,
    )


def page_permission(*permissions: str) -> Callable:
    """A page for logged-in users with `permissions`: others log in first, or get a 403 page
    that says which permission to ask for."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            for permission in permissions:
                if not request.user.has_perm(permission):
                    return forbidden_page(request, permission)
            return view(request, *args, **kwargs)

        return login_required(wrapper)

    return decorate


viewer_required = page_permission(VIEW)
operator_required = page_permission(VIEW, OPERATE)


# API -----------------------------------------------------------------------------------------


def json_error(status: int, code: str, message: str, **extra) -> JsonResponse:
    """Every API error has one shape: {"error": {"code": …, "message": …, …}}."""
    return JsonResponse({"error": {"code": code, "message": message, **extra}}, status=status)


def bearer_secret(request: HttpRequest) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; "" for a malformed one."""
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


def token_user(secret: str):
    """The active user an unrevoked token belongs to, or None. Marks the token used."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(secret_hash=ApiToken.hash(secret), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_PRECISION:
        ApiToken.objects.filter(id=token.id).update(last_used_at=now)
    return token.user


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request, reason):
        return reason  # the reason, for a JSON answer, instead of Django's page


def csrf_problem(request: HttpRequest) -> str | None:
    """Why a session-authenticated request fails Django's CSRF check, or None if it passes."""
    check = _CsrfCheck(lambda r: HttpResponse())
    check.process_request(request)
    return check.process_view(request, None, (), {})


def api_view(methods: Iterable[str] = ("GET",), permission: str = VIEW) -> Callable:
    """An API endpoint: authenticated by a bearer token or the session, answering every refusal
    in JSON (401 no or bad credentials, 405, 403 CSRF or permission).

    A request with a bearer token is exempt from CSRF: nothing in it comes from a cookie the
    browser adds on its own, so another site cannot forge it. A request authenticated by the
    session cookie gets Django's CSRF check on unsafe methods, as a page would.
    """
    allowed = tuple(methods)

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            secret = bearer_secret(request)
            if secret is not None:
                user = token_user(secret) if secret else None
                if user is None:
                    return unauthenticated(
                        "This API token is not valid (unknown, revoked, or not sent as "
                        "Authorization: Bearer <token>)."
                    )
                request.user = user
            elif not request.user.is_authenticated:
                return unauthenticated("Log in, or send an API token: Authorization: Bearer …")
            if request.method not in allowed:
                response = json_error(
                    405, "method_not_allowed", f"Use {' or '.join(allowed)} here."
                )
                response["Allow"] = ", ".join(allowed)
                return response
            if secret is None and request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
                reason = csrf_problem(request)
                if reason:
                    return csrf_failure(request, reason)
            for needed in dict.fromkeys((VIEW, permission)):
                if not request.user.has_perm(needed):
                    return json_error(
                        403,
                        "permission_denied",
                        f"You need the permission {needed} ({PERMISSION_NAMES[needed]}).",
                    )
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def unauthenticated(message: str) -> JsonResponse:
    response = json_error(401, "unauthenticated", message)
    response["WWW-Authenticate"] = 'Bearer realm="hot"'
    return response


def is_api_request(request: HttpRequest) -> bool:
    """Whether the request is for one of Hot's API URLs (wherever the project mounts them)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return False
    return "hot" in match.namespaces and (match.url_name or "").startswith("api-")


def csrf_failure(request: HttpRequest, reason: str = "", template_name=None) -> HttpResponse:
    """CSRF_FAILURE_VIEW: JSON under Hot's API, Django's own page everywhere else.

    `CSRF_FAILURE_VIEW = "hotapp.auth.csrf_failure"` in a project's settings.
    """
    if is_api_request(request):
        return json_error(
            403,
            "csrf_failed",
            f"CSRF check failed ({reason}). Send the CSRF token (X-CSRFToken header) with a "
            "session, or authenticate with an API token instead.",
        )
    if template_name is None:
        return csrf.csrf_failure(request, reason)
    return csrf.csrf_failure(request, reason, template_name)
