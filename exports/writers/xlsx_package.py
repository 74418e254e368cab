"""The xlsx container: a one-sheet OOXML package streamed into a zip file, written front to back.

The package holds what Excel needs and nothing more: `[Content_Types].xml`, the relationships, a workbook
with one sheet named "Export", the styles (0 plain, 1 bold for the header, 2 `yyyy-mm-dd hh:mm:ss.000` for
timestamps) and the sheet, whose XML the caller streams in. Strings are inline (`t="inlineStr"`), so there is
no shared-string table to hold in memory.

Why not zipfile: its deflate is zlib's, five times slower than ISA-L's on sheet XML, and the sheet is most of
an xlsx export's time. The zip written here is plain APPNOTE 6.3: small entries deflated whole, the sheet
streamed with a data descriptor (as Java's ZipOutputStream and Apache POI's streaming writer do), fixed
timestamps (1980-01-01) so equal content gives equal bytes. ZIP64 is used only when the part may outgrow
4 GiB (`zip64=True`), since some readers stumble on ZIP64 records they do not need.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from exports.errors import WriteError
from exports.writers.text_parts import DEFLATE, HashedFile

SPREADSHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELATIONSHIP_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_RELS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
SHEET_PATH = "xl/worksheets/sheet1.xml"
STYLE_BOLD = 1
STYLE_TIMESTAMP = 2

STATIC_PARTS = {
    "[Content_Types].xml": _XML
    + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    f'<Override PartName="/{SHEET_PATH}" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "</Types>",
    "_rels/.rels": _XML + f'<Relationships xmlns="{_PACKAGE_RELS_NS}">'
    f'<Relationship Id="rId1" Type="{_RELATIONSHIP_NS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>",
    "xl/workbook.xml": _XML + f'<workbook xmlns="{SPREADSHEET_NS}" xmlns:r="{_RELATIONSHIP_NS}">'
    '<bookViews><workbookView/></bookViews><sheets><sheet name="Export" sheetId="1" r:id="rId1"/></sheets>'
    "</workbook>",
    "xl/_rels/workbook.xml.rels": _XML + f'<Relationships xmlns="{_PACKAGE_RELS_NS}">'
    f'<Relationship Id="rId1" Type="{_RELATIONSHIP_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_RELATIONSHIP_NS}/styles" Target="styles.xml"/>'
    "</Relationships>",
    "xl/styles.xml": _XML + f'<styleSheet xmlns="{SPREADSHEET_NS}">'
    '<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss.000"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>",
}


def sheet_prologue(wide_columns: list[int]) -> bytes:
    """The sheet's XML up to `<sheetData>`: the first row frozen, and the given (1-based) columns widened so
    that a timestamp with milliseconds shows instead of ####."""
    cols = "".join(f'<col min="{i}" max="{i}" width="24" customWidth="1"/>' for i in wide_columns)
    return (
        _XML + f'<worksheet xmlns="{SPREADSHEET_NS}"><sheetViews><sheetView workbookViewId="0">'
        '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
        '<selection pane="bottomLeft"/></sheetView></sheetViews><sheetFormatPr defaultRowHeight="15"/>'
        + (f"<cols>{cols}</cols>" if cols else "")
        + "<sheetData>"
    ).encode("utf-8")


SHEET_EPILOGUE = b"</sheetData></worksheet>"

_DEFLATED = 8
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the earliest a zip can say
_DATA_DESCRIPTOR = 0x08
_U32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class _Entry:
    """One file in the zip. A streamed entry's local header is written before its CRC and sizes are known:
    they are zero there (and in its ZIP64 extra field) and follow the data in a data descriptor."""

    name: bytes
    offset: int
    zip64: bool = False
    streamed: bool = False
    crc: int = 0
    packed: int = 0
    size: int = 0

    def local_header(self) -> bytes:
        return struct.pack("<I", 0x04034B50) + self._fields() + self.name + self._extra()

    def central_header(self) -> bytes:
        version, attributes = (
            struct.pack("<H", self._version()),
            struct.pack("<HHHII", 0, 0, 0, 0, self.offset),
        )
        return (
            struct.pack("<I", 0x02014B50) + version + self._fields() + attributes + self.name + self._extra()
        )

    def _fields(self) -> bytes:
        """From `version needed to extract` to `extra field length`: the same in both headers."""
        sizes = (_U32, _U32) if self.zip64 else (self.packed, self.size)
        flags = _DATA_DESCRIPTOR if self.streamed else 0
        return struct.pack(
            "<HHHHHIIIHH",
            self._version(),
            flags,
            _DEFLATED,
            0,
            _DOS_DATE,
            self.crc,
            *sizes,
            len(self.name),
            len(self._extra()),
        )

    def _version(self) -> int:
        return 45 if self.zip64 else 20

    def _extra(self) -> bytes:
        return struct.pack("<HHQQ", 1, 16, self.size, self.packed) if self.zip64 else b""


class XlsxFile:
    """One xlsx part being written (a PartStream): the package's fixed parts, then the sheet, streamed."""

    def __init__(
        self,
        path: Path,
        *,
        prologue: bytes,
        compression_level: int,
        zip64: bool,
        deflate: ModuleType = DEFLATE,
    ) -> None:
        self.path = path
        self._file = HashedFile(path)
        self._deflate = deflate
        self._level = compression_level
        self._entries: list[_Entry] = []
        for name, text in STATIC_PARTS.items():
            self._add(name, text.encode("utf-8"))
        self._sheet = _Entry(SHEET_PATH.encode(), self._file.tell(), zip64=zip64, streamed=True)
        self._file.write(self._sheet.local_header())
        self._sheet_start = self._file.tell()
        self._compressor = deflate.compressobj(compression_level, deflate.DEFLATED, -15)
        self._crc = 0
        self._sheet_bytes = 0
        self.write(prologue)

    @property
    def compressed_bytes(self) -> int:
        return self._file.compressed_bytes

    def write(self, data: memoryview | bytes) -> None:
        self._crc = self._deflate.crc32(data, self._crc)
        self._sheet_bytes += len(data)
        self._file.write(self._compressor.compress(data))

    def finish(self) -> str:
        self.write(SHEET_EPILOGUE)
        self._file.write(self._compressor.flush())
        zip64, packed = self._sheet.zip64, self._file.tell() - self._sheet_start
        if not zip64 and max(packed, self._sheet_bytes) > _U32:
            raise WriteError("xlsx sheet outgrew 4 GiB without ZIP64: lower part_bytes")
        descriptor = struct.pack(
            "<IIQQ" if zip64 else "<IIII", 0x08074B50, self._crc, packed, self._sheet_bytes
        )
        self._file.write(descriptor)
        self._entries.append(
            _Entry(self._sheet.name, self._sheet.offset, zip64, True, self._crc, packed, self._sheet_bytes)
        )
        self._central_directory(zip64)
        return self._file.close()

    def discard(self) -> None:
        self._file.discard()

    def _add(self, name: str, data: bytes) -> None:
        compressor = self._deflate.compressobj(self._level, self._deflate.DEFLATED, -15)
        packed = compressor.compress(data) + compressor.flush()
        entry = _Entry(
            name.encode(),
            self._file.tell(),
            crc=self._deflate.crc32(data),
            packed=len(packed),
            size=len(data),
        )
        self._file.write(entry.local_header() + packed)
        self._entries.append(entry)

    def _central_directory(self, zip64: bool) -> None:
        start = self._file.tell()
        for entry in self._entries:
            self._file.write(entry.central_header())
        end = self._file.tell()
        count, size = len(self._entries), end - start
        if zip64:
            self._file.write(
                struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, size, start)
            )
            self._file.write(struct.pack("<IIQI", 0x07064B50, 0, end, 1))
        elif end > _U32:
            raise WriteError("xlsx part outgrew 4 GiB without ZIP64: lower part_bytes")
        self._file.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, size, min(start, _U32), 0))
