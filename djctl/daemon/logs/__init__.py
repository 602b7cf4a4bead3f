"""The supervisor's log: one file of Heroku-format lines (:mod:`.format`), written and
rotated by one process (:mod:`.writer`), tailed and followed by any number (:mod:`.reader`)."""

from djctl.daemon.logs import events
from djctl.daemon.logs.format import APP, SOURCES, SUPERVISOR, Clock, LogFilter, LogLine, escape_output, utcnow
from djctl.daemon.logs.reader import follow, tail
from djctl.daemon.logs.writer import LogWriter

__all__ = ["APP", "SOURCES", "SUPERVISOR", "Clock", "LogFilter", "LogLine", "LogWriter", "escape_output", "events",
           "follow", "tail", "utcnow"]
