"""Writers: Arrow record batches in, part files (under temporary names) and a manifest out.

One module per format.
"""

from exports.errors import WriteCanceled, WriteError, WriteLimitExceeded
from exports.writers.csv_gzip import (
    PartFile,
    WriteControl,
    remove_parts,
    temporary_path,
    write_csv_gzip_parts,
)
from exports.writers.manifest import manifest_build, manifest_bytes, manifest_schema

__all__ = [
    "PartFile",
    "WriteCanceled",
    "WriteControl",
    "WriteError",
    "WriteLimitExceeded",
    "manifest_build",
    "manifest_bytes",
    "manifest_schema",
    "remove_parts",
    "temporary_path",
    "write_csv_gzip_parts",
]
