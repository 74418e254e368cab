"""Run every benchmark section in one process tree: `python -m bench [section ...]`."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "insights.settings")

import django

django.setup()

from bench import bundle, export, formats, latency, polling, preview, pruning, upload_s3, upload_sftp  # noqa: E402
from bench import compile as compile_bench  # noqa: E402
from bench import pg_export as pg_export_bench  # noqa: E402
from bench import quote as quote_bench  # noqa: E402
from bench import scale_out as scale_out_bench  # noqa: E402
from bench import spark as spark_bench  # noqa: E402
from bench import wait as wait_bench  # noqa: E402
from bench.report import Report  # noqa: E402

SECTIONS = {
    "export": export.run,
    "formats": formats.run,
    "bundle": bundle.run,
    "preview": preview.run,
    "polling": polling.run,
    "latency": latency.run,
    "quote": quote_bench.run,
    "wait": wait_bench.run,
    "compile": compile_bench.run,
    "pruning": pruning.run,
    "pg_export": pg_export_bench.run,
    "scale_out": scale_out_bench.run,
    "spark": spark_bench.run,
    "upload_s3": upload_s3.run,
    "sftp_upload": upload_sftp.run,
}


def main(argv: list[str]) -> int:
    wanted = argv or list(SECTIONS)
    unknown = [name for name in wanted if name not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    report = Report()
    for name in wanted:
        SECTIONS[name](report)
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
