#!/bin/sh
# The one-shot `minio-init` service of compose (image minio/mc): create the bucket and the service's
# own MinIO user, allowed that bucket only. Idempotent: safe at every `docker compose up`.
#
# Needs MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, CMET_S3_BUCKET, CMET_S3_ACCESS_KEY_ID and
# CMET_S3_SECRET_ACCESS_KEY; MINIO_URL defaults to http://minio:9000.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${CMET_S3_BUCKET:?}" "${CMET_S3_ACCESS_KEY_ID:?}" "${CMET_S3_SECRET_ACCESS_KEY:?}"
url="${MINIO_URL:-http://minio:9000}"
bucket="$CMET_S3_BUCKET"
policy=cmet-bucket-rw

tries=0
until mc alias set cmet "$url" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
        echo "minio-init: $url not reachable" >&2
        exit 1
    fi
    sleep 2
done

mc mb --ignore-existing "cmet/$bucket"
mc anonymous set none "cmet/$bucket"

policy_file="${TMPDIR:-/tmp}/cmet-policy.json"
printf '%s\n' '{' \
    '  "Version": "2012-10-17",' \
    '  "Statement": [' \
    "    {\"Effect\": \"Allow\", \"Action\": [\"s3:GetBucketLocation\", \"s3:ListBucket\", \"s3:ListBucketMultipartUploads\"], \"Resource\": [\"arn:aws:s3:::$bucket\"]}," \
    "    {\"Effect\": \"Allow\", \"Action\": [\"s3:GetObject\", \"s3:PutObject\", \"s3:DeleteObject\", \"s3:AbortMultipartUpload\", \"s3:ListMultipartUploadParts\"], \"Resource\": [\"arn:aws:s3:::$bucket/*\"]}" \
    '  ]' \
    '}' > "$policy_file"
mc admin policy create cmet "$policy" "$policy_file"

# `user add` sets the secret again on a re-run (a changed .env takes effect)
mc admin user add cmet "$CMET_S3_ACCESS_KEY_ID" "$CMET_S3_SECRET_ACCESS_KEY"
if ! mc admin policy attach cmet "$policy" --user "$CMET_S3_ACCESS_KEY_ID"; then
    # attach refuses a policy that is already attached: fine; anything else is not
    case "$(mc admin user info cmet "$CMET_S3_ACCESS_KEY_ID")" in
        *"$policy"*) ;;
        *) echo "minio-init: could not attach policy $policy to $CMET_S3_ACCESS_KEY_ID" >&2; exit 1 ;;
    esac
fi
echo "minio-init: bucket $bucket and user $CMET_S3_ACCESS_KEY_ID ready"
