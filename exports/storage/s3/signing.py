"""Part uploads signed without hashing their bodies a second time.

Over plain HTTP, SigV4 signs a request's body: botocore reads every part once more to compute the SHA-256
it signs (`X-Amz-Content-SHA256`), although the part already carries that very digest, in base64, in its
`x-amz-checksum-sha256` header (multipart.py hashes each part before sending it). This signer takes the
payload hash from that header instead: the same signature over the same bytes on the wire, with one
SHA-256 pass per part instead of two. Whether the body is signed at all stays botocore's decision (over
HTTPS it sends a part that carries a checksum as `UNSIGNED-PAYLOAD`, and so does this signer); only how
the hash is obtained changes.

It is chosen per request through botocore's `choose-signer` event, for UploadPart only, on the clients it
is installed on; other clients in the process are untouched. Against a botocore whose signer works
otherwise, tests/exports/test_s3_storage.py (`test_part_upload_signs_its_checksum`) fails.
"""

from __future__ import annotations

import base64
from typing import Any

import botocore.auth
from botocore.auth import S3SigV4Auth

SIGNATURE_VERSION = "s3v4-insights-part-checksum"
_CHECKSUM_HEADER = "x-amz-checksum-sha256"


class PartChecksumSigV4Auth(S3SigV4Auth):
    """S3's SigV4 signer, but a body that comes with its SHA-256 checksum header is not hashed again."""

    def payload(self, request: Any) -> str:
        checksum = request.headers.get(_CHECKSUM_HEADER)
        if (
            checksum is None
            or self._is_streaming_checksum_payload(request)
            or not self._should_sha256_sign_payload(request)
        ):
            return str(super().payload(request))
        return base64.b64decode(checksum).hex()


def part_checksum_signing_install(client: Any) -> None:
    """Sign the UploadPart requests of `client` with PartChecksumSigV4Auth."""
    botocore.auth.AUTH_TYPE_MAPS.setdefault(SIGNATURE_VERSION, PartChecksumSigV4Auth)
    client.meta.events.register("choose-signer.s3.UploadPart", _signer_choose)


def _signer_choose(signature_version: object, **_: Any) -> str | None:
    # Only in place of the SigV4 signer botocore would use; anything else (unsigned, S3 Express) is kept.
    return SIGNATURE_VERSION if signature_version == "s3v4" else None
