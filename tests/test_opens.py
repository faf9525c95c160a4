"""The open counter (``tests/opens.py``) sees every data file a process opens, and none it does not.

Real processes on a real Delta table: delta-rs reading the whole table in process (Rust threads, no Python
``open``) opens every live file and the counter names each one; a process that reads only the log opens none;
opens from threads and child processes, by relative paths, are seen where they resolve; a failed open is not an
open. The table has a partition value that the log URI-encodes, so the paths compared are the files on disk.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from tests import lakes
from tests.opens import Trace, TraceError, commit_adds, data_files, require_strace, traced

FILES = 24



@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``FILES`` appends over two partitions, one of them ``a b%`` (on disk ``a%20b%25``, in the log encoded
    again)."""
    import pyarrow as pa

    path = tmp_path_factory.mktemp("opens") / "events"
    for n in range(FILES):
        part = "a b%" if n % 2 else "plain"
        lakes.write_table(path, pa.table({"user_id": [f"u{n}", f"u{n + 1}"], "part": [part, part]}),
                          partition_by=["part"])
    return path


def _python(code: str, *args: str, cwd: Path | None = None, reads: bool = False) -> Trace:
    require_strace()
    run = traced([sys.executable, "-c", textwrap.dedent(code), *args], cwd=cwd, reads=reads, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


def _live(table: Path) -> frozenset[str]:
    """The table's files as delta-rs lists them (not from the code under test)."""
    from deltalake import DeltaTable

    return frozenset(os.path.realpath(u) for u in DeltaTable(str(table)).file_uris())


def test_the_files_a_table_s_commits_added_are_its_files_on_disk(table: Path) -> None:
    added = commit_adds(table, range(FILES))
    assert added == _live(table) and len(added) == FILES
    assert all(Path(p).is_file() for p in added)
    assert any("a%20b%25" in p for p in added)  # the partition folder as it is on disk, decoded once


def test_delta_rs_reading_a_table_in_process_opens_every_data_file_and_the_counter_sees_each(table: Path) -> None:
    """The whole table read through DataFusion (Rust, its own threads): every data file opened, every byte
    counted; a Python audit hook in the same process sees none of it: why the count is taken at the system
    call."""
    run = _python("""
        import sys
        import pyarrow as pa
        from deltalake import DeltaTable, QueryBuilder
        hooked = set()
        sys.addaudithook(lambda event, args: hooked.add(str(args[0])) if event == "open" else None)
        rows = QueryBuilder().register("t", DeltaTable(sys.argv[1])).execute("SELECT * FROM t").read_all()
        assert pa.table(rows).num_rows == 2 * int(sys.argv[2])
        print(len([p for p in hooked if p.endswith(".parquet")]))
        """, str(table), str(FILES), reads=True)
    opened = run.data_files(table)
    assert opened == _live(table)
    assert run.bytes_from(opened) > 0 and all(run.read_bytes.get(p, 0) > 0 for p in opened)
    assert run.stdout.strip() == "0"  # Python's audit hook saw no data file open


def test_a_process_reading_only_the_log_opens_no_data_file(table: Path) -> None:
    run = _python("""
        import sys
        from deltalake import DeltaTable
        t = DeltaTable(sys.argv[1])
        assert len(t.file_uris()) == int(sys.argv[2]) and t.version() == int(sys.argv[2]) - 1
        t.get_add_actions(flatten=True)
        """, str(table), str(FILES))
    assert run.data_files(table) == frozenset()
    log = os.path.join(os.path.realpath(table), "_delta_log") + os.sep
    assert [p for p in run.paths if p.startswith(log)]  # it did read the log: the trace covers it


def test_opens_from_threads_and_children_are_seen_by_relative_path_and_a_failed_open_is_not(table: Path) -> None:
    """A thread reads one file with pyarrow; a child process, started in the table's folder, opens another by
    a relative path; a missing file is tried. The counter names exactly the two."""
    first, second = sorted(_live(table))[:2]
    root = os.path.realpath(table)
    run = _python("""
        import subprocess, sys, threading
        import pyarrow.parquet as pq
        t = threading.Thread(target=pq.read_table, args=(sys.argv[1],))
        t.start(); t.join()
        child = "import sys; open(sys.argv[1], 'rb', buffering=0).read(4)"
        subprocess.run([sys.executable, "-c", child, sys.argv[2]], cwd=sys.argv[3], check=True)
        try:
            open(sys.argv[1] + ".missing.parquet", "rb")
        except FileNotFoundError:
            pass
        """, first, os.path.relpath(second, root), root, reads=True)
    assert run.data_files(table) == {first, second}
    assert run.read_bytes[second] == 4 and run.read_bytes[first] > 0
    assert len({o.pid for o in run.opens if o.path in (first, second)}) == 2  # a thread and a child


def test_data_files_keeps_the_parquet_files_under_the_table_outside_its_log(tmp_path: Path) -> None:
    t = tmp_path / "t"
    paths = [f"{t}/a.parquet", f"{t}/p=1/b.parquet", f"{t}/_delta_log/00000000000000000010.checkpoint.parquet",
             f"{t}/_change_data/c.parquet", f"{t}/_delta_log/00000000000000000000.json", f"{tmp_path}/u/d.parquet",
             f"{t}2/e.parquet"]
    assert data_files(paths, t) == {f"{t}/a.parquet", f"{t}/p=1/b.parquet", f"{t}/_change_data/c.parquet"}


def test_a_trace_that_saw_no_open_is_an_error_not_an_empty_count(tmp_path: Path) -> None:
    """strace that cannot start its command records nothing: that is refused, never counted as no open."""
    require_strace()
    with pytest.raises(TraceError, match="no open"):
        traced([str(tmp_path / "no-such-program")])


def test_strace_s_lines_are_read_whole_across_threads_and_what_cannot_be_trusted_is_refused() -> None:
    """strace's own output, as it prints it: a call another thread interrupted is joined to its resumption; a
    failed open and an O_PATH descriptor open nothing; a relative open it could not decode resolves against the
    directory descriptor; io_uring (opens strace cannot see) is refused."""
    from tests.opens import _parse

    text = "\n".join([
        '7 openat(AT_FDCWD</w>, "/t/a.parquet", O_RDONLY|O_CLOEXEC <unfinished ...>',
        '8 openat(AT_FDCWD</w>, "/t/missing.parquet", O_RDONLY) = -1 ENOENT (No such file or directory)',
        '7 <... openat resumed>)             = 5</t/a.parquet>',
        '8 pread64(5</t/a.parquet>, ""..., 8, 100) = 8',
        '8 openat(3</t/p=1>, "b.parquet", O_RDONLY) = 6',
        '8 openat(AT_FDCWD</w>, "/t/c.parquet", O_RDONLY|O_PATH) = 7</t/c.parquet>',
        '8 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 6</t/p=1/b.parquet>, 0) = 0x7f0000000000',
    ])
    opens, reads = _parse(text, "/w")
    assert [(o.path, o.pid) for o in opens] == [("/t/a.parquet", 7), ("/t/p=1/b.parquet", 8), ("/t/c.parquet", 8)]
    trace = Trace(tuple(opens), reads, 0, "", "")
    assert trace.data_files("/t") == {"/t/a.parquet", "/t/p=1/b.parquet"}  # O_PATH reads nothing
    assert reads == {"/t/a.parquet": 8, "/t/p=1/b.parquet": 4096}
    with pytest.raises(TraceError, match="io_uring"):
        _parse("9 io_uring_setup(8, {}) = 3<anon_inode:[io_uring]>", "/w")
    with pytest.raises(TraceError, match="chdir"):
        _parse('9 chdir("/x") = 0\n9 openat(AT_FDCWD, "rel.parquet", O_RDONLY) = 4', "/w")
