import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from shop import tasks
from shop.models import Order


@csrf_exempt
def orders(request: HttpRequest) -> JsonResponse:
    """POST {"item", "email"}: the order and its tasks commit together, or not at all."""
    if request.method != "POST":
        return JsonResponse({"error": "POST an order"}, status=405)
    data = json.loads(request.body or b"{}")
    if not data.get("item") or "@" not in str(data.get("email", "")):
        return JsonResponse({"error": "an order needs an item and an email address"}, status=400)
    with transaction.atomic():
        order = Order.objects.create(item=data["item"], email=data["email"],
                                     packing_seconds=float(data.get("packing_seconds", 0)))
        receipt = tasks.send_receipt.enqueue(order.id)
        tally = tasks.tally.enqueue(order.id)
    return JsonResponse({"order": order.id, "receipt_task": receipt.id, "tally_task": tally.id}, status=201)


def order(request: HttpRequest, order_id: int) -> JsonResponse:
    found = Order.objects.filter(pk=order_id).values("id", "item", "receipt", "tallied").first()
    return JsonResponse(found or {"error": "no such order"}, status=200 if found else 404)


def result(request: HttpRequest, result_id: str) -> JsonResponse:
    """What Django's tasks framework knows of a task: status, attempts, return value, errors."""
    try:
        found = tasks.send_receipt.get_backend().get_result(result_id)
    except Exception:  # noqa: BLE001 - TaskResultDoesNotExist, from django.tasks or the backport
        return JsonResponse({"error": "no such task"}, status=404)
    return JsonResponse({
        "status": str(found.status),
        "attempts": found.attempts,
        "worker_ids": found.worker_ids,
        "return_value": found.return_value if found.status == "SUCCESSFUL" else None,
        "errors": [e.exception_class_path for e in found.errors],
    })
