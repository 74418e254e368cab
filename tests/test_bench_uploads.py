"""The upload benchmarks (issue 15): the paired-rounds arithmetic, and both sections run end to end at a tiny
size against the real servers (moto_server, sshd), printing well-formed figures. Speed is never judged here."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest

from bench import upload_s3, upload_sftp
from bench.paired import Comparison, Sample, compare
from bench.report import Report

LINE = re.compile(
    r"^BENCH (?P<name>\S+) (?P<value>\S+) (?P<unit>\S+)(?: ratio=(?P<ratio>\S+) vs (?P<anchor>.+))?$"
)


def _section(run: Callable[[Report], None], capsys: pytest.CaptureFixture[str]) -> dict[str, re.Match[str]]:
    """Run a section; every BENCH line it prints must be well formed. Figures by name."""
    run(Report())
    figures = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("BENCH"):
            match = LINE.match(line)
            assert match, f"malformed: {line!r}"
            assert math.isfinite(float(match["value"])), line
            figures[match["name"]] = match
    return figures


def test_both_ratios_are_medians_of_each_pairs_ratio() -> None:
    result = Comparison(
        ours=[Sample(wall=1.0, cpu=2.0), Sample(wall=2.0, cpu=2.0), Sample(wall=4.0, cpu=3.0)],
        theirs=[Sample(wall=1.1, cpu=2.5), Sample(wall=4.0, cpu=3.0), Sample(wall=4.8, cpu=3.5)],
    )
    assert result.ratios() == pytest.approx([1.1, 2.0, 1.2])
    assert result.ratio() == pytest.approx(1.2)  # not 9.9 / 7.0, the ratio of the sums
    assert result.cpu_ratio() == pytest.approx(2.5 / 2.0)  # per pair: 1.25, 1.5, 1.17
    assert result.rate(100) == pytest.approx(50.0)
    assert result.rate(100, "theirs") == pytest.approx(100 / 4.0)
    assert "median of 3 paired rounds" in result.spread()
    assert "range 1.10-2.00" in result.spread()


def test_rounds_alternate_which_side_goes_first() -> None:
    order: list[str] = []
    clock = iter(range(100))
    result = compare(
        lambda: order.append("ours"), lambda: order.append("theirs"), rounds=3, cpu=lambda: float(next(clock))
    )
    assert order == ["ours", "theirs", "theirs", "ours", "ours", "theirs"]
    assert len(result.ours) == len(result.theirs) == 3
    assert all(sample.cpu == 1.0 for sample in [*result.ours, *result.theirs])


@pytest.mark.parametrize(
    "section, names",
    [
        (
            upload_s3.run,
            [
                "s3_upload",
                "s3_upload_boto3",
                "s3_upload_cpu",
                "s3_upload_same_checksum",
                "s3_upload_same_checksum_cpu",
            ],
        ),
        (upload_sftp.run, ["sftp_upload", "sftp_upload_openssh_client", "sftp_upload_cpu"]),
    ],
)
def test_upload_sections_report_throughput_and_both_ratios(section, names, monkeypatch, capsys) -> None:
    monkeypatch.setenv("BENCH_UPLOAD_MB", "10")  # two parts of 8 MiB on S3; one connection on SFTP
    monkeypatch.setenv("BENCH_UPLOAD_ROUNDS", "2")
    figures = _section(section, capsys)
    assert sorted(figures) == sorted(names)
    main, _, cpu, *_ = names
    assert "median of 2 paired rounds" in figures[main]["anchor"]
    assert float(figures[main]["ratio"]) > 0
    assert float(figures[cpu]["ratio"]) > 0
    assert float(figures[cpu]["value"]) > 0


def test_upload_sections_need_two_rounds(monkeypatch) -> None:
    monkeypatch.setenv("BENCH_UPLOAD_ROUNDS", "1")
    with pytest.raises(ValueError, match="at least 2"):
        upload_s3.run(Report())
    with pytest.raises(ValueError, match="at least 2"):
        upload_sftp.run(Report())
