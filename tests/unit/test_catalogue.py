from __future__ import annotations

import dataclasses
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mountfs.catalogue.catalogue import Catalogue, VersionRow
from mountfs.catalogue.drafts import Draft
from mountfs.errors import (
    AmbiguousReferenceError,
    DatasetNotFoundError,
    PathNotFoundError,
    StateError,
    UsageError,
)
from mountfs.snapshot.entries import FILE, SYMLINK, TOMBSTONE, Entry, Location
from mountfs.snapshot.manifest import CLOSED, DRAFT, PUBLISHED, ChunkRef, Manifest, ObjectRef, Stats


def vid(n: int, prefix: str = "") -> str:
    return prefix + f"{n:0{32 - len(prefix)}x}"


def manifest(
    id_: str,
    project: str = "proj",
    name: str = "data",
    version: str = "1.0.0",
    *,
    parents: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    created: str = "2024-01-01T00:00:00Z",
    state: str = CLOSED,
) -> Manifest:
    return Manifest(
        id=id_,
        project=project,
        name=name,
        version=version,
        parents=parents,
        state=state,
        created=created,
        closed=created,
        user="u",
        host="h",
        data_url="file:///store",
        chunks=(ChunkRef(0, f"{id_}/chunk-0000.zip", 10, "ab" * 32),),
        file_table=ObjectRef(f"{id_}/files.parquet", 5, "cd" * 32),
        stats=Stats(files=3, bytes=30, added=3),
        tags=tags,
        description="desc",
        metadata={"k": [1, 2]},
        oplog=({"op": "add", "args": ["x"]},),
    )


def draft(
    id_: str,
    project: str = "proj",
    name: str = "data",
    version: str = "1.0.1",
    *,
    parents: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    created: str = "2024-06-01T00:00:00Z",
) -> Draft:
    return Draft(
        id=id_,
        project=project,
        name=name,
        version=version,
        parents=parents,
        data_url="file:///store",
        chunk_size=1 << 20,
        created=created,
        user="u",
        host="h",
        tags=tags,
    )


def fentry(path: str, size: int = 1) -> Entry:
    return Entry(path, FILE, size=size, sha256=f"{size:064x}", mode=0o644, mtime_ns=123)


@pytest.fixture
def cat(tmp_path: Path) -> Iterator[Catalogue]:
    c = Catalogue(tmp_path / "state" / "catalogue.db")
    yield c
    c.close()


A, B, C = vid(0xA1), vid(0xA2), vid(0xB3)


# --- the index of the registry ---


def test_upsert_manifest_round_trip_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    m = manifest(A, parents=(B,), tags=("x", "y"))
    with Catalogue(path) as c:
        c.upsert_manifest(m, "etag-1")
        assert c.manifest(A) == m
        assert c.manifest(B) is None
    with Catalogue(path) as c:
        assert c.manifest(A) == m
        changed = dataclasses.replace(m, state=PUBLISHED, description="new")
        c.upsert_manifest(changed, "etag-2")
        assert c.manifest(A) == changed
        assert c.etags() == {A: "etag-2"}
        [row] = c.search()
        assert row == VersionRow(
            A, "proj", "data", "1.0.0", PUBLISHED, m.created, ("x", "y"), "new", (B,), 3, 30, False
        )


def test_etags_and_remove_version(cat: Catalogue) -> None:
    cat.upsert_manifests([(manifest(A), "e1"), (manifest(B, version="1.0.1"), "e2")])
    assert cat.etags() == {A: "e1", B: "e2"}
    cat.remove_version(A)
    assert cat.etags() == {B: "e2"}
    assert cat.manifest(A) is None


@pytest.fixture
def populated(cat: Catalogue) -> Catalogue:
    cat.upsert_manifests(
        [
            (manifest(vid(1), "vision", "coco", "1.0.0", tags=("train", "raw")), "e"),
            (manifest(vid(2), "vision", "coco", "1.0.10", tags=("train",), created="2024-02-01"), "e"),
            (manifest(vid(3), "vision", "coco", "1.0.9", tags=("raw",), created="2024-03-01"), "e"),
            (manifest(vid(4), "vision/sub", "ImageNet", "2.0.0", tags=("train", "big")), "e"),
            (manifest(vid(5), "visionary", "coco-mini", "1.0.0"), "e"),
            (manifest(vid(6), "audio", "speech", "1.0.0", tags=("raw",)), "e"),
        ]
    )
    cat.create_draft(draft(vid(7), "vision", "coco", "1.0.11", parents=(vid(2),), tags=("train",)))
    return cat


def ids(rows: list[VersionRow]) -> list[str]:
    return [r.id for r in rows]


def test_search_project_recursive_and_not(populated: Catalogue) -> None:
    # Sorted by project, name, semver (1.0.9 before 1.0.10), not by string.
    assert ids(populated.search(project="vision")) == [vid(1), vid(3), vid(2), vid(4)]
    assert ids(populated.search(project="vision", recursive_project=False)) == [vid(1), vid(3), vid(2)]
    assert ids(populated.search(project="vision/sub")) == [vid(4)]
    assert populated.search(project="nothing") == []
    assert len(populated.search()) == 6


def test_search_name_partial_case_insensitive_and_regex(populated: Catalogue) -> None:
    assert ids(populated.search(name="imagenet")) == [vid(4)]
    assert ids(populated.search(name="COCO")) == [vid(1), vid(3), vid(2), vid(5)]
    assert ids(populated.search(name="^coco$")) == [vid(1), vid(3), vid(2)]
    assert ids(populated.search(name="sp.*ch")) == [vid(6)]
    assert ids(populated.search(name="co(")) == []  # not a regex, no substring match: no error


def test_search_tags_all_of_and_exclusion(populated: Catalogue) -> None:
    assert ids(populated.search(tags=["train"])) == [vid(1), vid(2), vid(4)]
    assert ids(populated.search(tags=["train", "raw"])) == [vid(1)]
    assert ids(populated.search(tags=["train", "-raw"])) == [vid(2), vid(4)]
    assert ids(populated.search(tags=["-train"])) == [vid(6), vid(3), vid(5)]
    with pytest.raises(UsageError):
        populated.search(tags=["-"])


def test_search_ids_and_version(populated: Catalogue) -> None:
    assert ids(populated.search(ids=[vid(6), vid(1), vid(99)])) == [vid(6), vid(1)]
    assert populated.search(ids=[]) == []
    assert ids(populated.search(project="vision", version="1.0.9")) == [vid(3)]


def test_search_only_completed_vs_drafts(populated: Catalogue) -> None:
    assert vid(7) not in ids(populated.search(project="vision"))
    rows = populated.search(project="vision", name="coco", only_completed=False)
    assert ids(rows) == [vid(1), vid(3), vid(2), vid(7)]
    assert (rows[-1].state, rows[-1].is_draft, rows[-1].parents) == (DRAFT, True, (vid(2),))
    assert ids(populated.search(tags=["train", "-raw"], include_drafts=True)) == [vid(2), vid(7), vid(4)]


def test_resolve_full_id(populated: Catalogue) -> None:
    assert populated.resolve(vid(3)) == vid(3)
    assert populated.resolve(vid(3).upper()) == vid(3)
    assert populated.resolve(vid(7)) == vid(7)
    with pytest.raises(DatasetNotFoundError, match="no dataset version matches"):
        populated.resolve(vid(7), include_drafts=False)
    with pytest.raises(DatasetNotFoundError):
        populated.resolve(vid(99))


def test_resolve_prefix(cat: Catalogue) -> None:
    many = [vid(i, "beef") for i in range(7)]
    cat.upsert_manifests([(manifest(i, name=f"n{n}"), "e") for n, i in enumerate(many)])
    cat.upsert_manifest(manifest(vid(1, "cafe1")), "e")
    cat.create_draft(draft(vid(1, "d00d")))
    assert cat.resolve("cafe") == vid(1, "cafe1")
    assert cat.resolve("CAFE1") == vid(1, "cafe1")
    assert cat.resolve("d00d") == vid(1, "d00d")
    with pytest.raises(DatasetNotFoundError):
        cat.resolve("d00d", include_drafts=False)
    with pytest.raises(DatasetNotFoundError):
        cat.resolve("f00d")
    with pytest.raises(AmbiguousReferenceError) as err:
        cat.resolve("beef")
    message = str(err.value)
    assert sum(i in message for i in many) == 5  # at most five candidates listed
    assert message.endswith(", ...")
    with pytest.raises(UsageError):
        cat.resolve("coco")


def test_resolve_project_name_and_version(populated: Catalogue) -> None:
    # The draft 1.0.11 is the highest semver; without drafts, 1.0.10 (not the string-max 1.0.9).
    assert populated.resolve("vision/coco") == vid(7)
    assert populated.resolve("vision/coco", include_drafts=False) == vid(2)
    assert populated.resolve("vision/coco@1.0.9") == vid(3)
    assert populated.resolve("vision/sub/ImageNet") == vid(4)
    with pytest.raises(DatasetNotFoundError):
        populated.resolve("vision/coco@3.0.0")
    with pytest.raises(DatasetNotFoundError):
        populated.resolve("vision/imagenet")  # names match exactly in references
    populated.upsert_manifest(manifest(vid(8), "vision", "coco", "1.0.9", created="2025-01-01"), "e")
    with pytest.raises(AmbiguousReferenceError, match=vid(8)):
        populated.resolve("vision/coco@1.0.9")


def test_resolve_ties_go_to_newest_and_semver_beats_free_text(cat: Catalogue) -> None:
    cat.upsert_manifest(manifest(vid(1), version="2.0.0", created="2024-01-01"), "e")
    cat.upsert_manifest(manifest(vid(2), version="2.0.0", created="2024-05-01"), "e")
    cat.upsert_manifest(manifest(vid(3), version="zzz", created="2025-01-01"), "e")
    assert cat.resolve("proj/data") == vid(2)
    assert cat.latest_version_string("proj", "data") == "2.0.0"
    assert cat.latest_version_string("proj", "other") is None
    assert [r.version for r in cat.versions_of("proj", "data")] == ["2.0.0", "2.0.0", "zzz"]


def test_children_include_drafts(populated: Catalogue) -> None:
    populated.upsert_manifest(manifest(vid(9), parents=(vid(1), vid(2)), created="2024-04-01"), "e")
    assert populated.children(vid(2)) == [vid(9), vid(7)]
    assert populated.children(vid(1)) == [vid(9)]
    assert populated.children(vid(6)) == []


def test_versions_of_and_latest_version_string(populated: Catalogue) -> None:
    rows = populated.versions_of("vision", "coco")
    assert [(r.version, r.is_draft) for r in rows] == [
        ("1.0.0", False),
        ("1.0.9", False),
        ("1.0.10", False),
        ("1.0.11", True),
    ]
    assert populated.latest_version_string("vision", "coco") == "1.0.11"


# --- drafts ---


def test_draft_create_update_oplog_delete(cat: Catalogue) -> None:
    d = draft(A, parents=(B,), tags=("t",))
    cat.create_draft(d)
    assert cat.draft(A) == d
    assert cat.draft(B) is None
    with pytest.raises(StateError):
        cat.create_draft(d)

    chunk = ChunkRef(0, f"{A}/chunk-0000.zip", 100, "ee" * 32)
    cat.update_draft(A, description="hello", tags=("a", "b"), metadata={"m": 1}, chunks=[chunk])
    cat.append_oplog(A, {"op": "add", "args": ["/data"]})
    cat.append_oplog(A, {"op": "remove", "args": ["x"]})
    got = cat.draft(A)
    assert got == dataclasses.replace(
        d,
        description="hello",
        tags=("a", "b"),
        metadata={"m": 1},
        chunks=[chunk],
        oplog=[{"op": "add", "args": ["/data"]}, {"op": "remove", "args": ["x"]}],
    )
    with pytest.raises(TypeError):
        cat.update_draft(A, id=B)
    with pytest.raises(DatasetNotFoundError):
        cat.update_draft(B, description="x")
    with pytest.raises(DatasetNotFoundError):
        cat.append_oplog(B, {})

    cat.create_draft(draft(B, created="2023-01-01"))
    assert [x.id for x in cat.drafts()] == [B, A]
    cat.put_pending(A, [(fentry("a"), "/src/a")])
    cat.delete_draft(A)
    assert cat.draft(A) is None
    assert cat.pending_count(A) == 0
    assert [x.id for x in cat.drafts()] == [B]


def test_pending_put_delete_under_and_order(cat: Catalogue) -> None:
    cat.create_draft(draft(A))
    cat.create_draft(draft(B))
    loc = Location(C, 2, 4096, 10, 0, 0xDEADBEEF)
    rows = [
        (fentry("b/x.txt"), "/src/b/x.txt"),
        (Entry("a.txt", FILE, 5, "f" * 64, 0o600, 99, loc=loc, origin=C), ""),
        (Entry("b", TOMBSTONE), ""),
        (Entry("b.link", SYMLINK, target="b/x.txt"), ""),
        (fentry("b/y/z.bin", 7), "/src/z.bin"),
        (fentry("b0"), "/src/b0"),
        (fentry("b-1"), "/src/b-1"),
    ]
    cat.put_pending(A, rows)
    cat.put_pending(B, [(fentry("other"), "/o")])
    got = list(cat.pending(A))
    assert [e.path for e, _ in got] == sorted(e.path for e, _ in rows)
    assert dict((e.path, (e, s)) for e, s in got) == {e.path: (e, s) for e, s in rows}
    assert cat.pending_count(A) == 7
    assert cat.pending_count(A, only_not_uploaded=True) == 4
    assert [e.path for e, _ in cat.pending(A, only_not_uploaded=True)] == [
        "b-1",
        "b/x.txt",
        "b/y/z.bin",
        "b0",
    ]

    # Upsert by path: one row per path, the last write wins.
    cat.put_pending(A, [(Entry("b/x.txt", TOMBSTONE), "")])
    assert cat.pending_count(A) == 7
    assert [e.kind for e, _ in cat.pending(A) if e.path == "b/x.txt"] == [TOMBSTONE]

    cat.delete_pending(A, ["a.txt", "missing"])
    assert "a.txt" not in [e.path for e, _ in cat.pending(A)]

    # 'b' and below only: not 'b-1', 'b.link' or 'b0', which sort around 'b/'.
    assert cat.delete_pending_under(A, "b") == 3
    assert [e.path for e, _ in cat.pending(A)] == ["b-1", "b.link", "b0"]
    assert cat.delete_pending_under(A, "") == 3
    assert cat.pending_count(A) == 0
    assert cat.pending_count(B) == 1  # another draft's rows are untouched

    with pytest.raises(DatasetNotFoundError):
        cat.put_pending(C, [(fentry("x"), "")])


def test_pending_streams_past_page_boundaries_while_caller_writes(cat: Catalogue) -> None:
    cat.create_draft(draft(A))
    paths = [f"d/{i:05d}" for i in range(4500)]
    cat.put_pending(A, [(fentry(p), "/src/" + p) for p in paths])
    seen = []
    for e, _ in cat.pending(A, only_not_uploaded=True):
        seen.append(e.path)
        loc = Location(A, 0, 0, 1, 0, 0)
        cat.record_upload(A, [dataclasses.replace(e, loc=loc)], None)
    assert seen == paths
    assert cat.pending_count(A, only_not_uploaded=True) == 0


def test_record_upload_applies_all_or_nothing(cat: Catalogue) -> None:
    cat.create_draft(draft(A))
    cat.put_pending(A, [(fentry(p), f"/src/{p}") for p in ("a", "b", "c")])
    loc = Location(A, 0, 30, 1, 0, 7)
    chunk = ChunkRef(0, f"{A}/chunk-0000.zip", 100, "00" * 32)
    done = [dataclasses.replace(fentry(p), loc=loc) for p in ("a", "b", "c")]

    def unchanged() -> None:
        assert [(e.loc, s) for e, s in cat.pending(A)] == [
            (None, "/src/a"),
            (None, "/src/b"),
            (None, "/src/c"),
        ]
        got = cat.draft(A)
        assert got is not None
        assert got.chunks == []

    with pytest.raises(PathNotFoundError, match="'nope'"):
        cat.record_upload(A, [done[0], dataclasses.replace(done[1], path="nope"), done[2]], chunk)
    unchanged()
    with pytest.raises(StateError):
        cat.record_upload(A, [done[0], fentry("b"), done[2]], chunk)
    unchanged()
    with pytest.raises(DatasetNotFoundError):
        cat.record_upload(B, done, chunk)

    cat.record_upload(A, done[:2], chunk)
    cat.record_upload(A, done[2:], None)  # dedup references: no chunk of their own
    assert [(e.loc, s) for e, s in cat.pending(A)] == [(loc, ""), (loc, ""), (loc, "")]
    assert cat.pending_count(A, only_not_uploaded=True) == 0
    got = cat.draft(A)
    assert got is not None
    assert got.chunks == [chunk]


def test_transaction_groups_calls(cat: Catalogue) -> None:
    cat.create_draft(draft(A))

    def close_then_crash() -> None:
        with cat.transaction():
            cat.upsert_manifest(manifest(A), "e")
            cat.delete_draft(A)
            raise RuntimeError("crash between the two")

    with pytest.raises(RuntimeError):
        close_then_crash()
    assert cat.manifest(A) is None
    assert cat.draft(A) is not None


def test_state(cat: Catalogue) -> None:
    assert cat.get_state("current") is None
    cat.set_state("current", A)
    cat.set_state("current", B)
    assert cat.get_state("current") == B
    cat.set_state("current", None)
    assert cat.get_state("current") is None


# --- several processes ---


def _writer(path: str, draft_id: str, n_batches: int, batch: int) -> None:
    c = Catalogue(Path(path))
    try:
        c.create_draft(draft(draft_id))
        for i in range(n_batches):
            rows = [(fentry(f"p/{i:04d}/{j:04d}"), f"/src/{j}") for j in range(batch)]
            c.put_pending(draft_id, rows)
            c.append_oplog(draft_id, {"batch": i})
            c.set_state("last", draft_id)
            assert c.pending_count(draft_id) == (i + 1) * batch
    finally:
        c.close()


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    # The file does not exist yet: both processes also create the schema at once.
    path = tmp_path / "c.db"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), d, 150, 200)) for d in (A, B)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with Catalogue(path) as c:
        assert c.pending_count(A) == c.pending_count(B) == 150 * 200
        a, b = c.draft(A), c.draft(B)
        assert a is not None
        assert b is not None
        assert a.oplog == b.oplog == [{"batch": i} for i in range(150)]


def test_hundred_thousand_pending_rows(cat: Catalogue) -> None:
    cat.create_draft(draft(A))
    n = 100_000
    rows = [(fentry(f"dir{i % 100:03d}/file{i:06d}.bin", i), f"/src/{i}") for i in range(n)]
    t0 = time.perf_counter()
    cat.put_pending(A, rows)
    t1 = time.perf_counter()
    streamed = list(cat.pending(A))
    t2 = time.perf_counter()
    assert len(streamed) == n
    assert [e.path for e, _ in streamed] == sorted(e.path for e, _ in rows)
    assert cat.pending_count(A, only_not_uploaded=True) == n
    print(f"\n100k pending rows: put {t1 - t0:.2f} s, streamed {t2 - t1:.2f} s")
