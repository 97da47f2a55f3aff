from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),  # login, logout, ...
    path("admin/", admin.site.urls),
    path("hot/", include("hotapp.urls")),
]
