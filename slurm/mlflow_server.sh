#!/usr/bin/env bash
# Start an MLflow tracking server for runs on a cluster (the report stage is its only writer).
#
#   bash slurm/mlflow_server.sh &                 # on the host where you run `snakemake --profile slurm ...`
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
#   snakemake --profile slurm reports/table1.csv
#   ssh -L 5000:127.0.0.1:5000 <that host>        # then browse http://127.0.0.1:5000 on your machine
#
# It listens on 127.0.0.1 only: nothing on the network can read or write your runs unless you say so with
# MLFLOW_HOST=0.0.0.0 (then put it behind your cluster's access control). Settings (environment):
#   MLFLOW_HOST (127.0.0.1)   MLFLOW_PORT (5000)
#   MLFLOW_BACKEND_STORE (sqlite:///results/mlflow.db, the local store the DAG uses by default)
#   MLFLOW_ARTIFACTS (results/mlflow-artifacts)
set -euo pipefail
host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"
store="${MLFLOW_BACKEND_STORE:-sqlite:///results/mlflow.db}"
artifacts="${MLFLOW_ARTIFACTS:-results/mlflow-artifacts}"
mkdir -p "$artifacts"
case "$store" in sqlite:///*) mkdir -p "$(dirname "${store#sqlite:///}")" ;; esac
echo "MLflow server on http://${host}:${port} (store ${store}); export MLFLOW_TRACKING_URI=http://${host}:${port}" >&2
exec "${PYTHON:-python}" -m mlflow server --host "$host" --port "$port" --backend-store-uri "$store" \
    --artifacts-destination "$artifacts" --workers 1
