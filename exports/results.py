"""Where one result's files go, named in one place (docs/DESIGN.md §5, docs/DESIGN.md):

    reports/<customer key>/<guid>_QueryExport_<epoch ms>__<12-digit part>.csv.gz   (the original's part names)
    reports/<customer key>/<guid>_manifest.json

`epoch_ms` is the attempt's start, so two attempts' parts never share a name; the manifest's name is the
query's, whichever attempt publishes.
"""

from __future__ import annotations

from dataclasses import dataclass

from exports.storage.base import key_validate
from exports.writers.formats import OutputFormat

MAX_PARTS = 10**12  # the part number has 12 digits


def part_extension(name: str) -> str:
    """`csv.gz` of `<guid>_QueryExport_<ms>__000000000000.csv.gz` (whatever comes after the part number)."""
    return name.rsplit("__", 1)[-1].partition(".")[2] if "__" in name else name.partition(".")[2]


def part_content_type(name: str) -> str:
    """The media type of a part, from its extension (what its output format says)."""
    kind, _, gz = part_extension(name).partition(".")
    try:
        internal = kind in ("xlsx", "parquet")  # compressed inside: their OutputFormat keeps the default
        return OutputFormat.parse(format=kind, compression="gzip" if gz or internal else "none").content_type
    except ValueError:
        return "application/octet-stream"


@dataclass(frozen=True, slots=True)
class ResultNames:
    prefix: str  # a storage key prefix: reports/<customer key>
    guid: str
    epoch_ms: int
    extension: str = "csv.gz"  # the output format's (exports.writers.formats.OutputFormat.extension)

    @classmethod
    def report(cls, *, customer_key: str, guid: str, epoch_ms: int, extension: str = "csv.gz") -> ResultNames:
        return cls(prefix=f"reports/{customer_key}", guid=guid, epoch_ms=epoch_ms, extension=extension)

    def part(self, index: int) -> str:
        """The file name of part `index` (from 0)."""
        if index < 0 or index >= MAX_PARTS:
            raise ValueError(f"part index out of range: {index}")
        return f"{self.guid}_QueryExport_{self.epoch_ms}__{index:012d}.{self.extension}"

    @property
    def manifest(self) -> str:
        return f"{self.guid}_manifest.json"

    def key(self, name: str) -> str:
        """The storage key of one of the result's files."""
        return key_validate(f"{self.prefix}/{name}")
