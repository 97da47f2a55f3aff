from django.db import models


class Order(models.Model):
    class Status(models.TextChoices):
        PLACED = "placed"
        CHARGED = "charged"
        SHIPPED = "shipped"

    number = models.CharField(max_length=20, unique=True)
    total = models.DecimalField(max_digits=10, decimal_places=2)
    status = models.CharField(max_length=10, choices=Status, default=Status.PLACED)
    charge_key = models.CharField(max_length=60, blank=True)
    tracking = models.CharField(max_length=20, blank=True)
