"""The API tokens page: a user makes and revokes their own tokens.

A new token's secret is in the response to the POST that made it and nowhere else: only its
hash is stored, so it cannot be shown again.
"""

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from hotapp.auth import viewer_required
from hotapp.models import ApiToken


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)


@viewer_required
def token_list(request: HttpRequest) -> HttpResponse:
    form, created = TokenForm(), None
    if request.method == "POST":
        form = TokenForm(request.POST)
        if form.is_valid():
            token, secret = ApiToken.issue(request.user, form.cleaned_data["name"])
            created, form = {"token": token, "secret": secret}, TokenForm()
    tokens = ApiToken.objects.filter(user=request.user).order_by("-created_at", "-id")
    response = render(
        request,
        "hotapp/tokens.html",
        {
            "form": form,
            "created": created,
            "tokens": tokens,
            "api_url": request.build_absolute_uri(reverse("hot:api-runs")),
        },
    )
    response["Cache-Control"] = "no-store"  # the page may hold a secret: keep it out of caches
    return response


@require_POST
@viewer_required
def revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = ApiToken.objects.filter(id=token_id, user=request.user).first()
    if token is None:
        raise Http404("You have no such token.")
    if ApiToken.objects.filter(id=token.id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    ):
        messages.success(request, f"Token {token.name} ({token.prefix}…) revoked.")
    return redirect("hot:token-list")
