"""The alerts page: the configured channels, their delivery history, and "Send test alert".

The channels are settings (HOT["ALERT_CHANNELS"]), so the page shows them read-only; the
history is the AlertDelivery rows, newest first, keyset-paginated like every list. While a row
on the page is still on its way, the history region polls itself with htmx (a meta refresh
without JavaScript) and stops once none is.
"""

from datetime import timedelta
from urllib.parse import urlsplit

from django import forms
from django.contrib import messages
from django.db.models import Count, Max, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from hotapp.auth import OPERATE, operator_required, viewer_required
from hotapp.conf import hot_settings
from hotapp.filters import decode_cursor, encode_cursor
from hotapp.models import AlertDelivery, DeliveryStatus
from hotapp.models.alerts import DELIVERY_BADGES
from hotapp.querysets import PAGE_SIZE
from runtime import alerts


class HistoryFilterForm(forms.Form):
    channel = forms.CharField(required=False, max_length=100)
    status = forms.ChoiceField(required=False, choices=[("", "any"), *DeliveryStatus.choices])
    after = forms.CharField(required=False)

    def clean_after(self):
        text = self.cleaned_data["after"]
        return decode_cursor(text) if text else None


def webhook_target(url: str) -> str:
    """A webhook's scheme and host only: its path often carries a secret (Slack's does)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path not in ("", "/") else url


def _channel_rows() -> list[dict]:
    # One grouped read over the last day's deliveries (alert_created_idx), and each channel's
    # last success: the page's figures without a COUNT over the whole history.
    since = timezone.now() - timedelta(days=1)
    recent = AlertDelivery.objects.filter(created_at__gte=since).values("channel", "status")
    counts: dict[str, dict[str, int]] = {}
    for row in recent.annotate(n=Count("id")).order_by():
        counts.setdefault(row["channel"], {})[row["status"]] = row["n"]
    last_sent = dict(
        AlertDelivery.objects.filter(created_at__gte=since, status=DeliveryStatus.SENT)
        .values("channel")
        .annotate(at=Max("sent_at"))
        .order_by()
        .values_list("channel", "at")
    )
    return [
        {
            "channel": channel,
            "target": webhook_target(channel.webhook)
            if channel.webhook
            else ", ".join(channel.email),
            "on": sorted(channel.on),
            "day": [
                (status, counts[channel.name][status], badge)
                for status, badge in DELIVERY_BADGES.items()
                if counts.get(channel.name, {}).get(status)
            ],
            "last_sent_at": last_sent.get(channel.name),
        }
        for channel in alerts.channels()
    ]


@viewer_required
def alert_list(request: HttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET)
    rows: list[AlertDelivery] = []
    next_url = ""
    if form.is_valid():
        data = form.cleaned_data
        history = AlertDelivery.objects.order_by("-created_at", "-id").defer("payload")
        if data["channel"]:
            history = history.filter(channel=data["channel"])
        if data["status"]:
            history = history.filter(status=data["status"])
        if data["after"]:
            created_at, row_id = data["after"]
            history = history.filter(
                Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=row_id)
            )
        rows = list(history[: PAGE_SIZE + 1])
        if len(rows) > PAGE_SIZE:
            rows = rows[:PAGE_SIZE]
            params = request.GET.copy()
            params["after"] = encode_cursor(rows[-1].created_at, rows[-1].id)
            next_url = "?" + params.urlencode()
    context = {
        "form": form,
        "errors": [e for errors in form.errors.values() for e in errors],
        "rows": rows,
        "next_url": next_url,
        "is_first_page": not request.GET.get("after"),
        "is_following": any(row.is_undelivered for row in rows),
        "statuses": DeliveryStatus.choices,
        "can_operate": request.user.has_perm(OPERATE),
        "window_seconds": f"{hot_settings()['ALERT_RATE_WINDOW_SECONDS']:g}",
    }
    context["channels"] = _channel_rows()
    if request.htmx and request.htmx.target == "alert-history":
        # The history, and the channels' figures beside it (an out-of-band swap).
        context["is_poll"] = True
        return render(request, "hotapp/alerts.html#alert-poll", context)
    context["channel_names"] = [row["channel"].name for row in context["channels"]]
    context["base_url"] = hot_settings()["ALERT_BASE_URL"]
    return render(request, "hotapp/alerts.html", context)


@require_POST
@operator_required
def send_test_alert(request: HttpRequest, name: str) -> HttpResponse:
    try:
        alerts.send_test(name, requested_by=request.user.get_username())
    except LookupError:
        raise Http404("No alert channel has that name.") from None
    messages.success(request, f"Test alert queued for {name}; its delivery shows below.")
    return redirect("hot:alerts")
