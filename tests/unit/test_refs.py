from __future__ import annotations

import pytest

from mountfs.catalogue.refs import Ref, next_version, parse_ref, parse_version, version_sort_key
from mountfs.errors import UsageError

FULL = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (FULL, Ref("id", FULL)),
        (FULL.upper(), Ref("id", FULL)),
        ("abcd", Ref("prefix", "abcd")),
        ("ABCD12", Ref("prefix", "abcd12")),
        (FULL[:31], Ref("prefix", FULL[:31])),
        ("proj/data", Ref("name", "proj/data", project="proj", name="data")),
        ("proj/data@1.2.0", Ref("name", "proj/data@1.2.0", project="proj", name="data", version="1.2.0")),
        ("team/vision/coco", Ref("name", "team/vision/coco", project="team/vision", name="coco")),
        ("a/b/c@v2", Ref("name", "a/b/c@v2", project="a/b", name="c", version="v2")),
        ("  proj/data  ", Ref("name", "proj/data", project="proj", name="data")),
        ("abcd/ef01", Ref("name", "abcd/ef01", project="abcd", name="ef01")),
    ],
)
def test_parse_ref(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",  # too short a prefix
        FULL + "0",  # too long for an id
        "mydataset",  # a bare name needs its project
        "abcd@1.0.0",
        "/data",
        "proj/",
        "proj/data@",
        "proj/data@1@2",
        "a//b",
        "proj@1/data",
        "xyz!",
    ],
)
def test_parse_ref_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_ref(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3", (1, 2, 3)),
        ("1.0", (1, 0)),
        ("7", (7,)),
        (" 1.0.10 ", (1, 0, 10)),
        ("v1.0.0", None),
        ("1.0.0-rc1", None),
        ("1..0", None),
        ("", None),
        ("latest", None),
    ],
)
def test_parse_version(text: str, expected: tuple[int, ...] | None) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ([], "1.0.0"),
        (["latest"], "1.0.0"),
        (["1.0.0"], "1.0.1"),
        (["1.0.9"], "1.0.10"),
        (["1.0.9", "1.0.10", "1.0.2"], "1.0.11"),  # numeric, not string, order
        (["2.0", "1.9.9"], "2.1"),
        (["1.0.0", "zzz", "1.0.0-rc1"], "1.0.1"),
    ],
)
def test_next_version(existing: list[str], expected: str) -> None:
    assert next_version(existing) == expected


def test_version_sort_key_puts_semvers_first_then_free_text_by_creation() -> None:
    rows = [("b", "2024-03"), ("1.0.10", "2024-01"), ("a", "2024-02"), ("1.0.9", "2024-04")]
    ordered = sorted(rows, key=lambda r: version_sort_key(*r))
    assert [v for v, _ in ordered] == ["1.0.9", "1.0.10", "a", "b"]
