"""Helpers the test tiers share (not collected: no module here is named ``test_*``).

- :mod:`tests.support.databases` -- the databases a run uses, one of each kind per pytest process
- :mod:`tests.support.waiting` -- ``wait_for``: poll a condition with a deadline
- :mod:`tests.support.commands` -- the ``djctl`` command line and the repository root
- :mod:`tests.support.rows` -- reading ``delayed_jobs`` and ``djctl_processes`` as a user would see them
- :mod:`tests.support.app` -- an application directory driven through the real ``djctl`` CLI
"""
