"""`pinclip catalog check` / `import` through the CLI: exit codes, summary, rejects file."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pinclip.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["catalog", *map(str, args)], env={"COLUMNS": "200"})


def test_check_exits_0_with_rejects(tmp_path, kit):
    root = kit.build(
        tmp_path / "c",
        pins=[{"pin_id": "p4", "image": "images/nope.png", "title": "t"}],
        edges=[{"pin_id": "p4", "board_id": "b1"}],
    )
    result = run("check", root)
    assert result.exit_code == 0, result.output
    assert "missing image file" in result.output and "edge to rejected pin" in result.output
    assert "2 rejected rows" in result.output
    assert len((root / "rejects.jsonl").read_text().splitlines()) == 2


def test_check_clean_catalog_and_rejects_option(tmp_path, kit):
    root = kit.build(tmp_path / "c")
    result = run("check", root, "--rejects", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.output
    assert "0 rejected rows" in result.output
    assert (tmp_path / "r.jsonl").read_text() == "" and not (root / "rejects.jsonl").exists()


def test_check_missing_column_fails_with_one_message(tmp_path, kit):
    root = kit.build(tmp_path / "c")
    kit.parquet(root / "boards.parquet", [{"board_id": "b1"}])
    result = run("check", root)
    assert result.exit_code == 2
    assert "boards.parquet: missing required column 'title'" in result.output
    assert "Traceback" not in result.output


def test_check_missing_dir_fails(tmp_path):
    result = run("check", tmp_path / "nope")
    assert result.exit_code == 2
    assert "no such catalog directory" in result.output


def test_import_then_check(tmp_path, kit):
    kit.png(tmp_path / "imgs" / "a.png")
    (tmp_path / "pins.csv").write_text("pin_id,image,title\na,a.png,Apple\nb,gone.png,Gone\n")
    (tmp_path / "boards.jsonl").write_text(json.dumps({"board_id": "b1", "title": "Fruit"}) + "\n")
    (tmp_path / "edges.csv").write_text("pin_id,board_id\na,b1\n")
    out = tmp_path / "out"
    result = run(
        "import", out, "--pins", tmp_path / "pins.csv", "--boards", tmp_path / "boards.jsonl",
        "--edges", tmp_path / "edges.csv", "--images", tmp_path / "imgs", "--license", "CC0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "missing image file" in result.output
    assert json.loads((out / "catalog.json").read_text())["license"] == "CC0"
    result = run("check", out)
    assert result.exit_code == 0 and "0 rejected rows" in result.output


def test_check_keeps_image_only_pins_and_counts_them(tmp_path, kit):
    root = kit.build(
        tmp_path / "c",
        pins=[{"pin_id": "p4", "image": "images/p1.png", "title": " ", "description": None}],
    )
    result = run("check", root)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "1 image-only pins (no title or description), kept" in flat
    assert "0 rejected rows" in flat


def test_strict_exits_non_zero_when_any_row_is_rejected(tmp_path, kit):
    root = kit.build(
        tmp_path / "c",
        pins=[{"pin_id": "p4", "image": "images/nope.png", "title": "t"}],
    )
    result = run("check", root, "--strict")
    assert result.exit_code == 1, result.output
    assert "--strict" in result.output and "1 rows rejected" in result.output
    clean = kit.build(tmp_path / "clean")
    assert run("check", clean, "--strict").exit_code == 0


def test_strict_import_exits_non_zero_when_any_row_is_rejected(tmp_path, kit):
    kit.png(tmp_path / "imgs" / "a.png")
    (tmp_path / "pins.csv").write_text("pin_id,image,title\na,a.png,Apple\nb,gone.png,Gone\n")
    (tmp_path / "boards.jsonl").write_text(json.dumps({"board_id": "b1", "title": "Fruit"}) + "\n")
    (tmp_path / "edges.csv").write_text("pin_id,board_id\na,b1\n")
    tables = ["--pins", tmp_path / "pins.csv", "--boards", tmp_path / "boards.jsonl"]
    tables += ["--edges", tmp_path / "edges.csv", "--images", tmp_path / "imgs"]
    assert run("import", tmp_path / "lenient", *tables).exit_code == 0
    assert run("import", tmp_path / "strict", *tables, "--strict").exit_code == 1


def test_check_lists_the_ids_of_image_only_pins(tmp_path, kit):
    root = kit.build(
        tmp_path / "c",
        pins=[
            {"pin_id": "untitled-4", "image": "images/p1.png", "title": " ", "description": None},
            {"pin_id": "untitled-5", "image": "images/p1.png", "title": None},
        ],
    )
    result = run("check", root)
    assert result.exit_code == 0, result.output
    assert "image-only pin ids: untitled-4, untitled-5" in " ".join(result.output.split())


def test_a_failed_import_leaves_no_output_folder(tmp_path, kit):
    kit.png(tmp_path / "imgs" / "a.png")
    (tmp_path / "pins.csv").write_text("pin_id,image,title\na,a.png,Apple\n")
    (tmp_path / "boards.jsonl").write_text(json.dumps({"board_id": "b1"}) + "\n")  # no title
    (tmp_path / "edges.csv").write_text("pin_id,board_id\na,b1\n")
    out = tmp_path / "new" / "catalog"
    result = run(
        "import", out, "--pins", tmp_path / "pins.csv", "--boards", tmp_path / "boards.jsonl",
        "--edges", tmp_path / "edges.csv", "--images", tmp_path / "imgs",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "missing required column 'title'" in result.output
    assert not out.exists()
