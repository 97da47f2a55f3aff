from django.contrib import admin
from django.urls import path

from hotapp import views

urlpatterns = [
    path("", views.run_list, name="run-list"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run-detail"),
    path("events/", views.event_list, name="event-list"),
    path("admin/", admin.site.urls),
]
