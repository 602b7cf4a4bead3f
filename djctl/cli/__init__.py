"""The command line: every click command and nothing else; nothing imports it."""
