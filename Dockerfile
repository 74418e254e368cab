# The Insights image: web (gunicorn), worker and beat (Celery) all run from it; docker-compose.yml picks the
# command. Only requirements.txt is installed: tests/test_requirements.py proves that is enough.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

# .dockerignore keeps the virtualenv, var/, .git and caches out of the image.
COPY . .

# Static files go where the running image serves them from (STATIC_ROOT, /app/staticfiles, by whitenoise),
# not into the var volume, which starts empty.
RUN DJANGO_SECRET_KEY=collectstatic python manage.py collectstatic --noinput

# Run as an unprivileged user; the var directory (a volume) is the only place it writes.
RUN useradd --system --uid 10001 --home-dir /var/lib/insights --shell /usr/sbin/nologin insights \
    && mkdir -p /var/lib/insights \
    && chown insights:insights /var/lib/insights
USER insights
ENV INSIGHTS_VAR_DIR=/var/lib/insights PORT=8000
VOLUME /var/lib/insights

EXPOSE 8000
CMD ["gunicorn", "insights.wsgi", "--workers", "4", "--threads", "4", "--access-logfile", "-"]
