"""``djctl pause | resume | cancel``: an operator's brakes, through queue.admin's rules.

A refusal (an unknown queue or job id, a job that failed already or finished meanwhile)
is one line on stderr, exit 2, and changes nothing.
"""

from __future__ import annotations

import click

from djctl.cli.base import UsageFailure, connect, settings


def operator(command: str) -> str:
    """Who acts, as a pause or cancel records it: ``alice on railgun (djctl cancel)``."""
    from djctl.queue.admin import operator as who
    from djctl.worker.identity import hostname

    return who(hostname(), command)


def _queues(names: tuple[str, ...], every: bool, verb: str):
    from djctl.queue import admin

    if bool(names) == every:
        raise UsageFailure(f"name the queues to {verb}, or --all (not both)")
    if every:
        return admin.EVERY
    bad = [n for n in names if not n.strip() or n == "*"]
    if bad:
        raise UsageFailure(f"{bad[0]!r} is not a queue name (every queue is --all)")
    return list(names)


def _listed(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names)


@click.command()
@click.argument("queues", nargs=-1, metavar="QUEUE...")
@click.option("--all", "every", is_flag=True, help="Pause every queue, those no job has used yet too.")
@click.option("--force", is_flag=True, help="Pause a queue no job has used yet.")
@click.pass_context
def pause(ctx: click.Context, queues: tuple[str, ...], every: bool, force: bool) -> None:
    """Stop every worker, on every host, claiming from these queues (kept in the database).
    Jobs already running finish; enqueueing still works; djctl resume undoes it."""
    from djctl.queue import admin

    chosen = _queues(queues, every, "pause")
    eng = connect(settings(ctx))
    done = admin.pause(eng, chosen, operator("djctl pause"), force=force)
    if done.unknown:
        raise UsageFailure(f"no job has ever been in queue {_listed(done.unknown)}: nothing paused "
                           "(see the queues with djctl stats, or pause one before its first job with --force)")
    if every:
        click.echo("Paused every queue: no worker claims a job until djctl resume --all."
                   if done.changed else "Every queue was already paused.")
        return
    if done.changed:
        click.echo(f"Paused queue {_listed(done.changed)}: no worker claims from "
                   f"{'it' if len(done.changed) == 1 else 'them'} until djctl resume.")
    if done.unchanged:
        click.echo(f"Queue {_listed(done.unchanged)} was already paused.")


@click.command()
@click.argument("queues", nargs=-1, metavar="QUEUE...")
@click.option("--all", "every", is_flag=True, help="Resume every paused queue.")
@click.pass_context
def resume(ctx: click.Context, queues: tuple[str, ...], every: bool) -> None:
    """Let workers claim from these paused queues again, at once."""
    from djctl.queue import admin
    from djctl.queue.stats import EVERY_QUEUE

    chosen = _queues(queues, every, "resume")
    eng = connect(settings(ctx))
    done = admin.resume(eng, chosen)
    if done.unknown:
        raise UsageFailure(f"no queue {_listed(done.unknown)}: no job has ever been in it and it is not paused; "
                           "nothing resumed (see the paused queues with djctl stats)")
    if every:
        named = [q for q in done.changed if q != EVERY_QUEUE]
        click.echo(f"Resumed every queue{' (' + _listed(named) + ' too)' if named else ''}."
                   if done.changed else "No queue was paused.")
        return
    if done.changed:
        click.echo(f"Resumed queue {_listed(done.changed)}: workers claim from "
                   f"{'it' if len(done.changed) == 1 else 'them'} again.")
    if done.unchanged:
        click.echo(f"Queue {_listed(done.unchanged)} was not paused.")
    with eng.connect().execution_options(sqlite_read=True) as conn:
        from djctl.queue.stats import paused_queues

        still = paused_queues(conn).get(EVERY_QUEUE)
    if still is not None:
        click.echo(f"Note: {still.sentence()}; djctl resume --all resumes it.")


@click.command()
@click.argument("ids", nargs=-1, type=int, metavar="ID...")
@click.pass_context
def cancel(ctx: click.Context, ids: tuple[int, ...]) -> None:
    """Cancel jobs: each is kept as failed, its last_error saying who cancelled it, and
    never runs again; a running one is stopped at once, on whatever host it runs
    (djctl retry runs it again). One ID refused and none is cancelled."""
    from djctl.queue import admin

    if not ids:
        raise UsageFailure("name the IDs of the jobs to cancel")
    eng = connect(settings(ctx))
    outcome = admin.cancel(eng, ids, operator("djctl cancel"))
    if outcome.refused:
        raise UsageFailure(refusal(outcome) + "; nothing cancelled")
    n = len(outcome.done)
    which = f"job {outcome.done[0]}" if n == 1 else f"{n} jobs ({_listed([str(i) for i in outcome.done])})"
    click.echo(f"Cancelled {which}: kept as failed and never run again; a running one is stopped at once.")


def refusal(outcome) -> str:
    """The one line for a refused cancel: which ids, and why."""
    from djctl.queue import admin

    parts = []
    gone = outcome.refused_for(admin.Refusal.UNKNOWN)
    if gone:
        parts.append(f"no job with id {_listed([str(i) for i in gone])} (it finished, was deleted, or never existed)")
    failed = outcome.refused_for(admin.Refusal.FAILED)
    if failed:
        parts.append(f"job {_listed([str(i) for i in failed])} has failed already: nothing to cancel")
    return "; ".join(parts)


COMMANDS = [pause, resume, cancel]
