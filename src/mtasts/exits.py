"""The exit codes of every ``mtasts`` command and of ``mtasts serve`` (sysexits.h values, as Postfix's own tools use):

====  ==================================================================================
0     done; a policy found; all checks passed
1     a negative answer: no policy, not cached; warnings (check, doctor)
2, 3  command-specific: failures (check, doctor), Postfix unknown (doctor)
64    usage: an argument the command cannot use (a key that is no domain, an unknown
      published domain, a missing DOMAIN)
69    the daemon is not running, and there is no store to read instead
70    a runtime failure (the store, the control socket, a file that cannot be written)
75    reports ingest only: a local fault (the report store); Postfix retries the delivery
77    no permission (the control socket)
78    configuration: the file names the key and what was expected
====  ==================================================================================
"""

EXIT_OK = 0
EXIT_NO = 1
EXIT_USAGE = 64  # EX_USAGE
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE
EXIT_RUNTIME = 70  # EX_SOFTWARE
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: reports ingest, a local fault (Postfix retries the delivery)
EXIT_NOPERM = 77  # EX_NOPERM
EXIT_CONFIG = 78  # EX_CONFIG
