#!/usr/bin/env bash
# Starts the object store: writes the one S3 identity (MLSTACK_S3_ACCESS_KEY and
# MLSTACK_S3_SECRET_KEY from the environment) into a config file on /tmp (a tmpfs: never on
# disk), then runs `weed mini` on /data, creating the bucket of MLSTACK_ARTIFACTS_DESTINATION
# (s3://<bucket>/<prefix>) when it does not exist yet.
set -euo pipefail

for key in MLSTACK_S3_ACCESS_KEY MLSTACK_S3_SECRET_KEY MLSTACK_ARTIFACTS_DESTINATION; do
  if [ -z "${!key:-}" ]; then
    echo "error: $key is not set; run 'make .env' (it generates the S3 keys) and start again" >&2
    exit 2
  fi
done
bucket="${MLSTACK_ARTIFACTS_DESTINATION#s3://}"
bucket="${bucket%%/*}"

config=/tmp/s3.json
(
  umask 077
  python -c '
import json, os, sys
identity = {
    "name": "mlflow",
    "credentials": [
        {"accessKey": os.environ["MLSTACK_S3_ACCESS_KEY"], "secretKey": os.environ["MLSTACK_S3_SECRET_KEY"]}
    ],
    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
}
json.dump({"identities": [identity]}, sys.stdout)
' >"$config"
)
unset MLSTACK_S3_ACCESS_KEY MLSTACK_S3_SECRET_KEY

# -ip: the components find each other on loopback; -ip.bind: the S3 port answers on the
# compose network. Off: the admin UI, WebDAV, the IAM API and telemetry (it would call out).
# 64 MB volumes instead of 128: less preallocated per volume on a small store.
exec weed mini -dir=/data -ip=127.0.0.1 -ip.bind=0.0.0.0 -s3.port=8333 \
  -s3.config="$config" -bucket="$bucket" \
  -admin.ui=false -webdav=false -s3.iam=false -master.telemetry=false \
  -master.volumeSizeLimitMB=64
