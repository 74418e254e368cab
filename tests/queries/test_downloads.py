import pytest

from queries.downloads import RangeNotSatisfiable, byte_range_parse


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("", 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=10-", 100, (10, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-1000", 100, (0, 99)),
        ("bytes=90-1000", 100, (90, 99)),
        ("bytes=9-3", 100, None),  # syntactically invalid: ignored, the whole file is sent
        ("bytes=0-1,5-6", 100, None),  # several ranges: the whole file
        ("items=0-1", 100, None),
        ("bytes=-", 100, None),
        ("bytes=0-" + "9" * 5000, 100, (0, 99)),  # a last position past every end is the end
        ("bytes=-" + "9" * 5000, 100, (0, 99)),  # so is a suffix longer than any file
        ("bytes=" + "0" * 5000 + "5-9", 100, (5, 9)),  # leading zeros are still a small number
        ("bytes=\u0661-\u0662", 100, None),  # digits of another script are not digits here
    ],
)
def test_byte_range_parse(header, size, expected):
    assert byte_range_parse(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=100-", 100),
        ("bytes=100-200", 100),
        ("bytes=-0", 100),
        ("bytes=0-", 0),
        ("bytes=" + "9" * 5000 + "-", 100),
    ],
)
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(RangeNotSatisfiable):
        byte_range_parse(header, size)
