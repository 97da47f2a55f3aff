"""The dashboard's and the JSON API's URLs. A project mounts them under a prefix of its choice,
in the namespace `hot`: `path("hot/", include("hotapp.urls"))`."""

from django.urls import path, re_path

from hotapp import alert_views, api, bulk_views, metrics, task_views, token_views, views

app_name = "hot"

urlpatterns = [
    path("", views.run_list, name="run-list"),
    path("overview/", views.overview, name="overview"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<uuid:run_id>/trace.json", views.run_trace, name="run-trace"),
    path("runs/<uuid:run_id>/<str:action>/", views.run_action, name="run-action"),
    path("events/", views.event_list, name="event-list"),
    path("events/<uuid:event_id>/", views.event_detail, name="event-detail"),
    path("events/<uuid:event_id>/cancel/", views.event_cancel, name="event-cancel"),
    path("tasks/", task_views.task_list, name="task-list"),
    path("tasks/<uuid:task_id>/", task_views.task_detail, name="task-detail"),
    path("tasks/<uuid:task_id>/<str:action>/", task_views.task_action, name="task-action"),
    path("schedules/", task_views.schedule_list, name="schedule-list"),
    path(
        "schedules/<int:schedule_id>/<str:action>/",
        task_views.schedule_action,
        name="schedule-action",
    ),
    path("api/runs/", api.runs, name="api-runs"),
    path("api/runs/<uuid:run_id>/", api.run, name="api-run"),
    path("api/runs/<uuid:run_id>/<str:action>/", api.run_action, name="api-run-action"),
    path("api/events/", api.events, name="api-events"),
    path("api/events/<uuid:event_id>/", api.event, name="api-event"),
    path("api/events/<uuid:event_id>/cancel/", api.event_cancel, name="api-event-cancel"),
    path("bulk/", bulk_views.bulk_list, name="bulk-list"),
    path("bulk/new/", bulk_views.bulk_new, name="bulk-new"),
    path("bulk/<uuid:operation_id>/", bulk_views.bulk_detail, name="bulk-detail"),
    path("bulk/<uuid:operation_id>/stop/", bulk_views.bulk_stop, name="bulk-stop"),
    path("api/runs/bulk/", bulk_views.api_bulk_start, name="api-bulk-start"),
    path("api/bulk/<uuid:operation_id>/", bulk_views.api_bulk, name="api-bulk"),
    # Last of the API: any other api/ URL is a JSON 404 (hotapp.auth.is_api_request knows the
    # API by its names, api-*).
    re_path(r"^api/", api.not_found, name="api-not-found"),
    # Prometheus's default metrics_path when Hot is mounted at the root; no trailing slash.
    path("metrics", metrics.metrics, name="metrics"),
    path("tokens/", token_views.token_list, name="token-list"),
    path("alerts/", alert_views.alert_list, name="alerts"),
    path("alerts/<str:name>/test/", alert_views.send_test_alert, name="alert-test"),
    path("tokens/<int:token_id>/revoke/", token_views.revoke, name="token-revoke"),
]
