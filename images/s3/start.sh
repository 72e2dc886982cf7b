#!/usr/bin/env bash
# Starts the object store: writes the one S3 identity (MLSTACK_S3_ACCESS_KEY and
# MLSTACK_S3_SECRET_KEY from the environment, read again at every start) into a config file on
# /tmp (a tmpfs: never on disk), runs SeaweedFS on /data with only its S3 gateway on the
# container's network, and creates the bucket of MLSTACK_ARTIFACTS_DESTINATION
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

# Master (9333), volume server (8080) and filer (8888) answer on the container's loopback only:
# they take no keys, so on the stack's network they would bypass the S3 identity. Only the S3
# gateway (8333), which checks the keys, binds every interface. Off: WebDAV, the IAM API, the
# Iceberg and Lance catalogs (ports of their own) and telemetry (it would call out).
# Capacity: as many volumes as the disk holds (-volume.max=0: free space / volume size, counted
# at each start; the default of 8 filled the store at 8 x the volume size), 1 GB each (not
# preallocated; vacuumed, i.e. copied, one at a time); writes stop with 1 GB left on the disk.
weed server -dir=/data -ip=127.0.0.1 -ip.bind=127.0.0.1 -filer -s3 -s3.ip.bind=0.0.0.0 \
  -s3.port=8333 -s3.config="$config" -s3.iam=false -webdav=false -master.telemetry=false \
  -s3.port.iceberg=0 -s3.port.lance=0 -master.volumeSizeLimitMB=1024 -volume.max=0 \
  -volume.minFreeSpace=1GiB &
server=$!
# tini signals this shell: the server gets the stop signal and this script its exit status
trap 'kill -TERM "$server" 2>/dev/null' TERM INT

# The bucket, through SeaweedFS's own admin shell (on loopback), once the gateway answers
for _ in $(seq 180); do
  healthcheck http://127.0.0.1:8333/healthz 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || break
  sleep 1
done
if ! echo "s3.bucket.list" | weed shell -master=127.0.0.1:9333 2>/dev/null | grep -qx "  $bucket.*"; then
  echo "s3.bucket.create -name $bucket" | weed shell -master=127.0.0.1:9333 >/dev/null
  echo "s3: created bucket $bucket"
fi
wait "$server"
