# A thin wrapper around scripts/setup, so the image cannot drift from the documented set-up.
# The torch 2.4.0 wheel brings its CUDA 12.1 libraries, so this runs on a GPU host
# (docker run --gpus all ...) and on a CPU-only one alike; only the NVIDIA driver comes from the host.
#
#   docker build -t harness .
#   docker run --rm --gpus all -v "$PWD/../shared/data:/shared/data:ro" -v "$PWD/results:/app/results" \
#     harness run configs/freeze_heads_a.yaml --set device=cuda
FROM rust:1-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN scripts/setup
# configs read ../shared/data relative to /app
ENV PATH=/app/.venv/bin:$PATH
ENTRYPOINT ["harness"]
CMD ["--help"]
