# Loyalty Assistant: one image for every role (`loyalty run --role all|bot|scheduler`, `loyalty migrate`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Chinese glyphs for the /stats charts' labels (without them the charts fall back to English).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-noto-cjk && rm -rf /var/lib/apt/lists/*

# Dependencies first, so a code change rebuilds only the last layers.
COPY pyproject.toml README.md ./
RUN mkdir -p bot handlers web scheduler notifications loyalty storage && pip install . && pip uninstall -y loyalty-assistant
COPY bot ./bot
COPY handlers ./handlers
COPY loyalty ./loyalty
COPY scheduler ./scheduler
COPY storage ./storage
COPY web ./web
COPY notifications ./notifications
RUN pip install --no-deps . && useradd --system --uid 10001 loyalty

USER loyalty
EXPOSE 8080
ENV LOYALTY_HTTP_HOST=0.0.0.0 LOYALTY_HTTP_PORT=8080 LOYALTY_LOG_FORMAT=json
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
ENTRYPOINT ["loyalty"]
CMD ["run", "--role", "all"]
