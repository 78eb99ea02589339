# Production image: gunicorn behind your TLS proxy, static files served by whitenoise.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs settings to load; these throwaway values exist only during the build.
RUN SECRET_KEY=build-only DEBUG=false python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --home-dir /app emailservice \
    && chown -R emailservice /app/staticfiles

USER emailservice
EXPOSE 8000
# The worker timeout comes from WEB_TIMEOUT (emailservice/gunicorn.conf.py). In sync mode run the
# outbox sweep beside it, once per host: `python manage.py deliver_pending --loop` (README).
CMD ["gunicorn", "-c", "emailservice/gunicorn.conf.py", "emailservice.wsgi", \
     "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
