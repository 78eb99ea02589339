"""gunicorn's settings for every way we serve (make run, tests, bench, the Dockerfile).

Read by gunicorn itself (`gunicorn -c emailservice/gunicorn.conf.py emailservice.wsgi`): plain
environment reads only, no Django. The worker timeout is WEB_TIMEOUT, the same variable the
settings check SEND_BUDGET_SECONDS against, so a sync send always ends before its worker is killed.
"""

import os

timeout = int(float(os.environ.get("WEB_TIMEOUT", "30")))
graceful_timeout = int(float(os.environ.get("WEB_GRACEFUL_TIMEOUT", "10")))

# No credential reaches a log line: emailservice/logredact.py.
logger_class = "emailservice.logredact.RedactingLogger"
