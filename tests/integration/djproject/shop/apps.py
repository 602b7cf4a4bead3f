import os

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "tests.integration.djproject.shop"
    label = "shop"

    def ready(self) -> None:
        from tests.integration.djproject.shop import tasks

        log = os.environ.get("DJCTL_TEST_SIGNAL_LOG")
        if not log:
            return

        def record(signal_name: str):
            def receiver(sender, task_result, **_kwargs):
                with open(log, "a") as f:
                    f.write(f"{signal_name} {task_result.id} {task_result.status} {sender.__name__}\n")
            return receiver

        self._receivers = [record("started"), record("finished")]
        tasks.compat.task_started.connect(self._receivers[0])
        tasks.compat.task_finished.connect(self._receivers[1])
