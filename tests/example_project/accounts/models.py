from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """The shop's own user model (AUTH_USER_MODEL); Hot works with whatever the project has."""
