"""The three CSV dialects (docs/DESIGN.md §3 and §8): how a text value becomes a field, and how lines end.

Numbers, booleans, timestamps and NULL are written the same way in every dialect (see exports.writers.csv_gzip);
the dialects differ in their text fields, line ends and byte-order mark:

- `rfc4180` (the default, byte for byte today's files): UTF-8 without BOM, LF line ends. A field is quoted
  only when it contains a comma, a double quote, CR or LF; inner double quotes are doubled.
- `excel`: for spreadsheets. A UTF-8 BOM starts each part (so Excel reads UTF-8, not the local code page),
  lines end with CRLF, and a text value starting with `=`, `+`, `-`, `@`, TAB or CR gets a leading `'` (OWASP's
  advice against CSV injection: Excel shows the text instead of running it as a formula; a reader that is not
  a spreadsheet sees the `'`). Then quoted as in rfc4180. Header titles are text values too.
- `no_newline` (Coveo's NO_NEWLINE): every record on one physical line, LF-terminated. Inside a text value a
  backslash becomes `\\\\`, a double quote `\\"`, CR `\\r` and LF `\\n`; nothing else is escaped. A value that
  contains a comma (after escaping) is enclosed in double quotes, so the comma cannot split it; its inner
  quotes are already `\\"`. This is MySQL's `FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' ESCAPED BY
  '\\\\'` and Snowflake's `ESCAPE = '\\\\' ESCAPE_UNENCLOSED_FIELD = '\\\\' FIELD_OPTIONALLY_ENCLOSED_BY = '"'`,
  so both load it as is. (Python's csv module splits it with `escapechar="\\\\", doublequote=False`, but
  reads `\\n` back as `n`: decode the escapes yourself there.)

In every dialect NULL and the empty string are the empty field, except in a one-column file, where an empty
field is written `""` so its line is not blank (see csv_gzip).

Speed: a text column is checked with a few byte searches over its data buffer; only when a special character
occurs do Arrow kernels escape, and then only the values that need it. No Python code runs per value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from exports.writers.arrow_text import data_bytes, present, replaced, wrapped_where

# Characters that force quoting (RFC 4180). A space does not: it is data, and quoting it is not required.
NEEDS_QUOTING = re.compile(r'[,"\r\n]')
# OWASP's list of characters that make a spreadsheet read a cell as a formula.
FORMULA_START = re.compile(r"^[=+\-@\t\r]")
# no_newline's escapes, backslash first so that the backslashes it inserts are not escaped again.
NO_NEWLINE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\r": "\\r", "\n": "\\n"}


@dataclass(frozen=True, slots=True)
class CsvDialect:
    name: str
    line_terminator: str
    bom: bool
    text_fields: Callable[[pa.Array], pa.Array]  # a string array -> its fields (vectorised; nulls stay null)
    text_field: Callable[[str], str]  # one text value -> its field (header titles)


# --- rfc4180 ----------------------------------------------------------------------------------------


def rfc4180_field(text: str) -> str:
    if NEEDS_QUOTING.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def rfc4180_fields(text: pa.Array) -> pa.Array:
    raw = data_bytes(text)
    if not present(raw, (b",", b'"', b"\r", b"\n")):  # the common case: four byte searches, no copy
        return text
    needs_quotes = pc.match_substring_regex(text, NEEDS_QUOTING.pattern)
    # Quote only the values that need it, then put them back in place.
    chosen = pc.filter(text, needs_quotes)
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(chosen, '"', '""'), '"', "")
    return pc.replace_with_mask(text, needs_quotes, quoted)


# --- excel --------------------------------------------------------------------------------------------


def excel_field(text: str) -> str:
    return rfc4180_field("'" + text if FORMULA_START.match(text) else text)


def excel_fields(text: pa.Array) -> pa.Array:
    if present(data_bytes(text), (b"=", b"+", b"-", b"@", b"\t", b"\r")):
        looks_like_formula = pc.match_substring_regex(text, FORMULA_START.pattern)
        text = wrapped_where(text, looks_like_formula, "'", "")
    return rfc4180_fields(text)


# --- no_newline ---------------------------------------------------------------------------------------


def no_newline_field(text: str) -> str:
    for target, replacement in NO_NEWLINE_ESCAPES.items():
        text = text.replace(target, replacement)
    return f'"{text}"' if "," in text else text


def no_newline_fields(text: pa.Array) -> pa.Array:
    raw = data_bytes(text)
    escaped = replaced(text, NO_NEWLINE_ESCAPES, raw)
    if raw.find(b",") < 0:
        return escaped
    return wrapped_where(escaped, pc.match_substring(escaped, ","), '"', '"')


RFC4180 = CsvDialect("rfc4180", "\n", False, rfc4180_fields, rfc4180_field)
EXCEL = CsvDialect("excel", "\r\n", True, excel_fields, excel_field)
NO_NEWLINE = CsvDialect("no_newline", "\n", False, no_newline_fields, no_newline_field)
DIALECTS = {dialect.name: dialect for dialect in (RFC4180, EXCEL, NO_NEWLINE)}
