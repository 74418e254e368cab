"""Writers: Arrow record batches in, part files (under temporary names) and a manifest out.

`write_parts` (formats.py) is the one entry point: it writes the OutputFormat a customer chose with the
writer of that format, one module each (csv_gzip with csv_dialects, ndjson, xlsx with xlsx_package,
parquet), all sharing parts.py (the part files, the control, the loop) and, for the text formats,
text_parts.py and arrow_text.py.
"""

from exports.errors import WriteCanceled, WriteError, WriteLimitExceeded
from exports.writers.csv_gzip import write_csv_gzip_parts
from exports.writers.formats import OutputFormat, write_parts
from exports.writers.manifest import manifest_build, manifest_bytes, manifest_schema
from exports.writers.parts import PartFile, WriteControl, remove_parts, temporary_path

__all__ = [
    "OutputFormat",
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
    "write_parts",
]
