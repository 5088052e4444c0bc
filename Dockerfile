# lit_rev on CPU or GPU. Build: docker build -t lit_rev .
# Run the quickstart:          docker run --rm -v $PWD/logs:/app/logs lit_rev
# Any other command:           docker run --rm --gpus all lit_rev python -m lit_rev fit --config configs/density/glow_cifar10.yaml
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY lit_rev ./lit_rev
RUN pip install torch==2.14.1 torchvision==0.29.1 && pip install -e .
COPY configs ./configs
COPY benchmarks ./benchmarks
CMD ["python", "-m", "lit_rev", "fit", "--config", "configs/quickstart.yaml"]
