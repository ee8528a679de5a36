# imgdedup on the embedded defaults (SQLite, FAISS, local CNN), CPU only.
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the CPU wheel index: PyPI's default build is a multi-GB CUDA one. Everything else from the
# lock, by its hashes, as `make run` and CI install it.
RUN pip install --no-deps torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-deps uv==0.9.30
COPY requirements.lock ./
RUN uv pip install --python /opt/venv/bin/python --no-deps --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN uv pip install --python /opt/venv/bin/python --no-deps --no-build-isolation .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 imgdedup
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/imgdedup
# The installed package carries its migrations (migrations/, as app/db/migrations): nothing else is needed.
ENV PATH=/opt/venv/bin:$PATH \
    APP_HOST=0.0.0.0 \
    APP_PORT=8000 \
    APP_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
RUN mkdir -p /data && chown imgdedup /data
USER imgdedup
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["python", "-m", "app", "serve"]
