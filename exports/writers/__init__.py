"""Writers: Arrow record batches in, part files (under temporary names) and a manifest out.

One module per format.
"""

from exports.errors import WriteCanceled, WriteError, WriteLimitExceeded
from exports.writers.csv_gzip import PartFile, remove_parts, temporary_path, write_csv_gzip_parts
from exports.writers.manifest import (
    manifest_build,
    manifest_bytes,
    manifest_file_name,
    manifest_schema,
    part_file_name,
)

__all__ = [
    "PartFile",
    "WriteCanceled",
    "WriteError",
    "WriteLimitExceeded",
    "manifest_build",
    "manifest_bytes",
    "manifest_file_name",
    "manifest_schema",
    "part_file_name",
    "remove_parts",
    "temporary_path",
    "write_csv_gzip_parts",
]
