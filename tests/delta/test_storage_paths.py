"""Unit tests of the pure parts of ``dsr/delta/storage.py``: ``is_remote``, ``join``, ``storage_options``,
``delta_table_exists`` and ``list_delta_tables`` on local folders (the S3 end to end is ``test_storage.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsr.delta.storage import delta_table_exists, is_remote, join, list_delta_tables, storage_options
from tests import lakes

# --- is_remote ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["s3://bucket/prefix", "s3a://bucket/p", "gs://b/x", "abfss://c@acct/x", "s3://b"])
def test_uris_with_a_scheme_are_remote(uri: str) -> None:
    assert is_remote(uri) is True


@pytest.mark.parametrize("uri", ["/tmp/lake", "lake/events", "./lake", "", "file:///tmp/lake", "C:\\lake",
                                 "s3:/bucket/one-slash"])
def test_local_paths_and_file_uris_are_not_remote(uri: str) -> None:
    assert is_remote(uri) is False


# --- join ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("root", "parts", "expected"), [
    ("/lake", ("events",), "/lake/events"),
    ("/lake", ("sales", "orders"), "/lake/sales/orders"),
    ("/lake", ("sales/orders",), "/lake/sales/orders"),
    ("/lake/", ("events/",), "/lake/events"),
    ("/lake", (), "/lake"),
    ("/lake/../data", ("t",), "/data/t"),
    ("/lake", ("/elsewhere/t",), "/elsewhere/t"),  # an absolute part wins
    ("/lake", ("s3://b/t",), "s3://b/t"),  # so does a URI
    ("s3://bucket/prefix", ("events",), "s3://bucket/prefix/events"),
    ("s3://bucket/prefix/", ("/_dsr/",), "/_dsr"),  # an absolute local part wins over a remote root too
    ("s3://bucket/prefix/", ("sales/orders/",), "s3://bucket/prefix/sales/orders"),
    ("s3://bucket", ("a", "b"), "s3://bucket/a/b"),
    ("s3://bucket/prefix", ("gs://other/t",), "gs://other/t"),
    ("s3://bucket/prefix", (), "s3://bucket/prefix"),
])
def test_join(root: str, parts: tuple[str, ...], expected: str) -> None:
    assert join(root, *parts) == expected


def test_join_makes_a_relative_local_root_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert join("lake", "events") == str(tmp_path / "lake" / "events")
    assert join(".", "lake") == str(tmp_path / "lake")
    assert join("lake") == str(tmp_path / "lake")


# --- storage_options ----------------------------------------------------------------------------------------

_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "DSR_S3_CONDITIONAL_PUT")


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No AWS_* variable (and no DSR_S3_CONDITIONAL_PUT) in this test's environment."""
    for key in list(os.environ):
        if key.startswith("AWS_") or key in _ENV:
            monkeypatch.delenv(key)
    return monkeypatch


@pytest.mark.parametrize("uri", ["/tmp/lake", "lake", "file:///tmp/lake", "gs://bucket/lake", "abfss://c@a/x"])
def test_no_options_but_for_s3(uri: str, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    assert storage_options(uri) is None


def test_s3_defaults_without_any_variable(clean_env: pytest.MonkeyPatch) -> None:
    assert storage_options("s3://bucket/lake") == {"AWS_REGION": "us-east-1", "conditional_put": "etag"}
    assert storage_options("s3a://bucket/lake") == {"AWS_REGION": "us-east-1", "conditional_put": "etag"}


def test_s3_credentials_and_region_come_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "secret-example")
    clean_env.setenv("AWS_SESSION_TOKEN", "token-example")
    clean_env.setenv("AWS_REGION", "eu-central-1")
    clean_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # AWS_REGION wins
    assert storage_options("s3://bucket/lake") == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret-example",
        "AWS_SESSION_TOKEN": "token-example", "AWS_REGION": "eu-central-1", "conditional_put": "etag",
    }


def test_s3_region_falls_back_to_aws_default_region(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert storage_options("s3://bucket/lake") == {"AWS_REGION": "eu-west-1", "conditional_put": "etag"}


def test_empty_variables_are_left_out(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ACCESS_KEY_ID", "")
    clean_env.setenv("AWS_REGION", "")
    clean_env.setenv("AWS_ENDPOINT_URL", "")
    assert storage_options("s3://bucket/lake") == {"AWS_REGION": "us-east-1", "conditional_put": "etag"}


def test_an_http_endpoint_allows_http(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert storage_options("s3://bucket/lake") == {
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ALLOW_HTTP": "true",
        "conditional_put": "etag",
    }


def test_an_https_endpoint_does_not_allow_http(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ENDPOINT_URL", "https://minio.example.org")
    assert storage_options("s3://bucket/lake") == {
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "https://minio.example.org", "conditional_put": "etag",
    }


def test_the_s3_specific_endpoint_wins(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ENDPOINT_URL", "https://general.example.org")
    clean_env.setenv("AWS_ENDPOINT_URL_S3", "http://s3.example.org:9000")
    opts = storage_options("s3://bucket/lake")
    assert opts is not None
    assert opts["AWS_ENDPOINT_URL"] == "http://s3.example.org:9000" and opts["AWS_ALLOW_HTTP"] == "true"


def test_conditional_put_can_be_changed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DSR_S3_CONDITIONAL_PUT", "dynamo")
    assert storage_options("s3://bucket/lake") == {"AWS_REGION": "us-east-1", "conditional_put": "dynamo"}


# --- delta_table_exists -------------------------------------------------------------------------------------


def test_a_delta_table_exists(tmp_path: Path) -> None:
    lakes.write_table(tmp_path / "t", {"id": [1, 2]})
    assert delta_table_exists(str(tmp_path / "t")) is True


def test_a_partitioned_table_exists_and_its_partition_folder_is_no_table(tmp_path: Path) -> None:
    lakes.write_table(tmp_path / "events", {"d": ["2026-01-01"], "x": [1]}, partition_by=["d"])
    assert delta_table_exists(str(tmp_path / "events")) is True
    assert (tmp_path / "events" / "d=2026-01-01").is_dir()
    assert delta_table_exists(str(tmp_path / "events" / "d=2026-01-01")) is False


def test_no_table_where_there_is_no_delta_log(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "data.parquet").write_bytes(b"PAR1")
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    assert delta_table_exists(str(tmp_path / "plain")) is False
    assert delta_table_exists(str(tmp_path / "missing")) is False
    assert delta_table_exists(str(tmp_path / "a-file")) is False


def test_a_delta_log_without_a_commit_or_checkpoint_is_no_table(tmp_path: Path) -> None:
    log = tmp_path / "t" / "_delta_log"
    log.mkdir(parents=True)
    assert delta_table_exists(str(tmp_path / "t")) is False
    (log / "_last_checkpoint").write_text("{}", encoding="utf-8")
    (log / "00000000000000000000.crc").write_text("{}", encoding="utf-8")
    assert delta_table_exists(str(tmp_path / "t")) is False


def test_a_checkpoint_alone_counts_as_a_table(tmp_path: Path) -> None:
    log = tmp_path / "t" / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000010.checkpoint.parquet").write_bytes(b"PAR1")
    assert delta_table_exists(str(tmp_path / "t")) is True


# --- list_delta_tables --------------------------------------------------------------------------------------


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """A folder of Delta tables: top level, nested, inside dsr's own ``_dsr`` folder, and folders that are not."""
    r = tmp_path / "lake"
    lakes.write_table(r / "users", {"user_id": ["u1"]})
    lakes.write_table(r / "events", {"user_id": ["u1"], "d": ["2026-01-01"]}, partition_by=["d"])
    lakes.write_table(r / "sales" / "orders", {"user_no": [1]})
    lakes.write_table(r / "sales" / "eu" / "refunds", {"user_no": [2]})
    lakes.write_table(r / "_dsr" / "control", {"request_id": ["req_1"]})
    lakes.write_table(r / ".hidden" / "t", {"x": [1]})
    lakes.write_table(r / "region=eu" / "t", {"x": [1]})
    lakes.write_table(r / "users" / "inner", {"x": [1]})  # inside a table: not searched
    (r / "raw" / "csv").mkdir(parents=True)
    (r / "raw" / "csv" / "dump.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (r / "README.txt").write_text("not a table", encoding="utf-8")
    return r


def test_list_delta_tables_below_a_root(root: Path) -> None:
    assert sorted(list_delta_tables(str(root))) == ["events", "sales/eu/refunds", "sales/orders", "users"]


def test_list_delta_tables_skips_what_it_is_told(root: Path) -> None:
    assert sorted(list_delta_tables(str(root), skip=("sales/eu",))) == ["events", "sales/orders", "users"]
    assert sorted(list_delta_tables(str(root), skip=("sales",))) == ["events", "users"]
    assert sorted(list_delta_tables(str(root), skip=("sales/",))) == ["events", "users"]
    assert sorted(list_delta_tables(str(root), skip=("users", "events"))) == ["sales/eu/refunds", "sales/orders"]
    assert sorted(list_delta_tables(str(root), skip=("sale",))) == [
        "events", "sales/eu/refunds", "sales/orders", "users"]  # a prefix of a name is not a folder


def test_list_delta_tables_of_a_missing_or_empty_root(tmp_path: Path) -> None:
    assert list(list_delta_tables(str(tmp_path / "missing"))) == []
    (tmp_path / "empty").mkdir()
    assert list(list_delta_tables(str(tmp_path / "empty"))) == []


def test_a_root_that_is_itself_a_table_lists_nothing_below_it(tmp_path: Path) -> None:
    lakes.write_table(tmp_path / "t", {"x": [1]})
    lakes.write_table(tmp_path / "t" / "sub", {"x": [1]})
    assert list(list_delta_tables(str(tmp_path / "t"))) == []


def test_a_folder_with_a_delta_log_is_listed_as_a_table(tmp_path: Path) -> None:
    (tmp_path / "lake" / "half" / "_delta_log").mkdir(parents=True)  # no commit yet: still a table's folder
    lakes.write_table(tmp_path / "lake" / "whole", {"x": [1]})
    assert sorted(list_delta_tables(str(tmp_path / "lake"))) == ["half", "whole"]
