from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
    email = models.EmailField()
    packing_seconds = models.FloatField(default=0)
    receipt = models.TextField(blank=True)
    tallied = models.BooleanField(default=False)
