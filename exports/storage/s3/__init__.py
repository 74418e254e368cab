"""Amazon S3 (or an S3-compatible server) as storage, through boto3.

The package, file by file:

- `storage.py`: S3Storage: its configuration, reads, deletes, presigned URLs and the sweep of old uploads.
- `publication.py`: all or nothing: one multipart upload per staged file, completed at commit (manifest last).
- `multipart.py`: the multipart-upload calls, and the checksums that prove what the server assembled.
- `parts.py`: a file cut into parts: their byte ranges within S3's limits, bodies streamed from the file.
- `signing.py`: part uploads signed with the SHA-256 they already carry, so no part is hashed twice.
- `errors.py`: boto3's, botocore's and the network's exceptions as StorageError, retryable or not.
"""

from exports.storage.s3.storage import S3Storage

__all__ = ["S3Storage"]
