# The fraudstream image used by docker-compose for the worker, the API and the producer.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DO_NOT_TRACK=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY stream stream
COPY features features
COPY models models
COPY monitoring monitoring
COPY producers producers
RUN pip install --no-cache-dir -c constraints.txt .
ENTRYPOINT ["fraudstream"]
