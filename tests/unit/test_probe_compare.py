"""canary と安定版の比較（probe/compare.py）の、推論の要らない部分: 比べる行のファイルの読み方と、
答えないサーバー。

2 つの本物のサーバーの比較は tests/integration/test_probe_compare.py。
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mii_cli.errors import ClusterError, ConfigError
from mii_cli.probe.compare import compare, read_rows
from tests.fakes.http import HttpStandIn
from tests.support import free_port


def rows_file(tmp_path: Path, text: str, name: str = "rows.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- 読める形 ------------------------------------------------------------------------------------


def test_csv_without_a_header(tmp_path: Path) -> None:
    path = rows_file(tmp_path, "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    assert read_rows(path) == [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def test_csv_with_a_header_line(tmp_path: Path) -> None:
    path = rows_file(
        tmp_path, "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6,3,4.8,1.8\n"
    )
    assert read_rows(path) == [[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 4.8, 1.8]]


def test_csv_with_spaces_and_integers(tmp_path: Path) -> None:
    assert read_rows(rows_file(tmp_path, " 1, 2 ,3\n")) == [[1.0, 2.0, 3.0]]


def test_json_lines(tmp_path: Path) -> None:
    path = rows_file(tmp_path, "[5.1, 3.5, 1.4, 0.2]\n[6, 3, 4.8, 1.8]\n")
    rows = read_rows(path)
    assert rows == [[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 4.8, 1.8]]
    assert all(isinstance(value, float) for row in rows for value in row)


@pytest.mark.parametrize(
    "text",
    [
        "# rows near the boundary\n\n5.1,3.5,1.4,0.2\n   \n# another comment\n6.7,3.0,5.2,2.3\n\n",
        "\n# header comes after a comment\nsepal_length,sepal_width,petal_length,petal_width\n"
        "5.1,3.5,1.4,0.2\n\n6.7,3.0,5.2,2.3\n",
        "# json\n[5.1, 3.5, 1.4, 0.2]\n\n  # indented comment\n[6.7, 3.0, 5.2, 2.3]\n",
    ],
    ids=["csv", "csv-with-header", "json"],
)
def test_comments_and_blank_lines_are_skipped(tmp_path: Path, text: str) -> None:
    assert read_rows(rows_file(tmp_path, text)) == [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


# --- 読めないもの: ファイルと行を名指す ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("5.1,3.5,1.4,0.2\n# c\n5.1,oops,1.4,0.2\n", 3, "not a row of numbers: 5.1,oops,1.4,0.2"),
        ("a,b,c,d\n1,2,3,4\nx,y,z,w\n", 3, "not a row of numbers: x,y,z,w"),  # 見出しは 1 行目だけ
        ("[1, 2, 3]\n\n[1, 2,\n", 3, "not a JSON array of numbers"),
        ('[1, 2, 3]\n{"a": 1}\n', 2, "not a row of numbers"),
        ("[1, 2, 3]\n[]\n", 2, "not a row of numbers"),
        ('[1, 2, 3]\n[1, "2", 3]\n', 2, "not a row of numbers"),
        ("[1, 2, 3]\n[1, true, 3]\n", 2, "not a row of numbers"),
        ("[1, 2, 3]\n[[1, 2, 3]]\n", 2, "not a row of numbers"),
        ("[1, 2, 3]\n[1, NaN, 3]\n", 2, "not a row of numbers"),
        ("[1, 2, 3]\n[1, Infinity, 3]\n", 2, "not a row of numbers"),
        ("1,2,3\n1,nan,3\n", 2, "not a row of numbers"),
        ("1,2,3\n1,inf,3\n", 2, "not a row of numbers"),
        ("1,2,3\n-inf,2,3\n", 2, "not a row of numbers"),
    ],
)
def test_a_bad_line_names_the_file_and_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = rows_file(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        read_rows(path)
    assert error.value.message.startswith(f"{path}:{line}: ")
    assert message in error.value.message


@pytest.mark.parametrize("text", ["", "\n\n  \n", "# only\n# comments\n"])
def test_a_file_without_rows_is_refused_with_the_accepted_forms(tmp_path: Path, text: str) -> None:
    path = rows_file(tmp_path, text)
    with pytest.raises(ConfigError, match="has no rows") as error:
        read_rows(path)
    assert str(path) in error.value.message
    assert "[5.1, 3.5, 1.4, 0.2]" in (error.value.hint or "")


def test_a_header_alone_is_not_rows(tmp_path: Path) -> None:
    path = rows_file(tmp_path, "sepal_length,sepal_width,petal_length,petal_width\n")
    with pytest.raises(ConfigError, match="has no rows, only a header"):
        read_rows(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*absent\.csv"):
        read_rows(tmp_path / "absent.csv")


# --- 答えないサーバー -----------------------------------------------------------------------------


def test_an_unreachable_stable_server_is_a_cluster_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ClusterError, match=r"the stable pod does not answer /metadata"):
        compare(url, url, timeout=2)


def test_a_server_without_metadata_is_a_cluster_error() -> None:
    server = HttpStandIn(routes={})
    try:
        with pytest.raises(ClusterError, match=r"the stable pod answered /metadata with 404"):
            compare(server.url, server.url, timeout=2)
    finally:
        server.close()
