FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY alerts alerts
COPY workers workers
COPY templates templates
RUN pip install --no-cache-dir -e .
USER nobody
