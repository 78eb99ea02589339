"""The one harness shared by tests, bench and bin/: free ports, waits on events, process groups,
redis-server, gunicorn, Celery workers, the SMTP sink, an API client and the data factories.

Modules: ports, waiting, procs, redis, smtp, app (environment, gunicorn, Celery), api, factories.
Only `factories` needs Django (and `smtp` aiosmtpd and cryptography); the rest is the standard
library, so bin/ scripts (run with the venv's python) use it once the repo root is on sys.path.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
