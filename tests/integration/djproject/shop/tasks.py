"""Tasks the conformance tests enqueue and a real djctl worker runs."""

import asyncio
import os

from djctl.contrib.django import compat

if compat.FRAMEWORK == "django.tasks":
    from django.tasks import task
else:
    from django_tasks import task


def _note(text: str) -> None:
    with open(os.environ["DJCTL_TEST_NOTES"], "a") as f:
        f.write(text + "\n")


@task
def add(a: int, b: int) -> int:
    return a + b


@task
async def add_async(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task
def note(text: str) -> str:
    _note(text)
    return text


@task(queue_name="mail")
def mail(text: str) -> str:
    _note(f"mail {text}")
    return text


@task(max_attempts=1)
def fail(message: str) -> None:
    raise ValueError(message)


@task(max_attempts=3)
def fail_then_wait(message: str) -> None:
    raise ValueError(message)


@task(max_attempts=1)
def exit_task() -> None:
    raise SystemExit(3)


@task(max_attempts=1)
def interrupt_task() -> None:
    raise KeyboardInterrupt


@task(max_attempts=1)
def unserialisable() -> object:
    return object()


@task(takes_context=True)
def with_context(context, x: int) -> dict:
    return {"attempt": context.attempt, "id": context.task_result.id, "x": x}


@task
def not_json_arg(value) -> None:
    return None


@task(unique_key=lambda user: f"welcome:{user}")
def welcome(user: int) -> int:
    return user


@task(concurrency_key=lambda account: f"account:{account}", concurrency_limit=1)
def sync(account: int) -> int:
    _note(f"sync {account}")
    return account
