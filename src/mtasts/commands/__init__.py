"""The ``mtasts`` commands other than ``serve``: query, cache (and warm, export), override,
check, publish, reports, doctor. ``mtasts.cli`` parses the command line and hands each its
configuration and arguments; their exit codes are ``mtasts.exits``; they reach a running
daemon through ``client`` and print through ``output``.
"""
