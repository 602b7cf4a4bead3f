"""The shop's tasks: a sync one that writes the receipt, an async one that tallies the order."""

import time

try:
    from django.tasks import task  # Django 6
except ImportError:
    from django_tasks import task  # the backport, Django 5.2

from shop.models import Order


@task(priority=10, queue_name="mail")
def send_receipt(order_id: int) -> str:
    order = Order.objects.get(pk=order_id)
    time.sleep(order.packing_seconds)  # packing takes a while; a killed worker's attempt runs again
    order.receipt = f"Receipt for {order.item}, sent to {order.email}"
    order.save(update_fields=["receipt"])
    return order.receipt


@task
async def tally(order_id: int) -> int:
    await Order.objects.filter(pk=order_id).aupdate(tallied=True)
    return await Order.objects.filter(tallied=True).acount()
