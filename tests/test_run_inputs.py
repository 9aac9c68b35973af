"""Bad inputs around a run are one line and exit 2; a pipeline killed before its first evaluation resumes."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from tiny import SPACE, write_search_config

from nas import pipeline as pipeline_cli
from nas import search as search_cli
from nas.config import DataConfig
from nas.data import load_splits
from nas.data.split import DataError
from nas.journal import Journal
from nas.search import SearchRun


def _config(folder: Path, **extra) -> Path:
    sections = {"controller": {"name": "evolution", "options": {"population_size": 2, "sample_size": 2}},
                "data": {"subset": 200}, "train": {"steps": 2}, "search": {"budget": 2, "seed": 0}}
    return write_search_config(folder, **{**sections, **extra})


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_non_utf8_config_and_space_are_one_line_errors(tmp_path, capsys):
    cfg = _config(tmp_path)
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_bytes(cfg.read_bytes() + b"# caf\xe9\n")
    assert search_cli.main([str(bad_cfg), "--check"]) == 2
    assert "not UTF-8" in _one_line(capsys.readouterr().err)
    (tmp_path / "bad_space.yaml").write_bytes(SPACE.encode() + b"# \xff\xfe\n")
    bad_space = _config(tmp_path, space="bad_space.yaml")
    assert search_cli.main([str(bad_space), "--check"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "bad_space.yaml" in line and "not UTF-8" in line


def test_resume_with_a_non_utf8_run_config_is_one_line(tmp_path, capsys):
    cfg = _config(tmp_path)
    out = tmp_path / "run"
    assert search_cli.main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    saved = out / "config.yaml"
    saved.write_bytes(saved.read_bytes() + b"# \xff\n")
    assert search_cli.main([str(cfg), "--out", str(out), "--resume", "--no-progress"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(saved) in line and "not UTF-8" in line


@pytest.mark.parametrize("under", [False, True])
def test_out_naming_a_file_is_one_line_for_search_and_pipeline(tmp_path, capsys, under):
    cfg = _config(tmp_path, scaling={"max_points": 2, "phis": [1], "divisor": 2})
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    out = afile / "sub" if under else afile
    for cli, extra in ((search_cli, ["--no-progress"]), (search_cli, ["--resume", "--no-progress"]),
                       (pipeline_cli, ["--no-progress"]), (pipeline_cli, ["--resume", "--no-progress"])):
        assert cli.main([str(cfg), "--out", str(out), *extra]) == 2
        line = _one_line(capsys.readouterr().err)
        assert "afile" in line and "is a file" in line
    assert afile.read_text() == "keep me\n"


def test_pipeline_resumes_after_a_kill_before_the_first_evaluation(tmp_path, capsys, monkeypatch):
    cfg = _config(tmp_path, scaling={"max_points": 2, "phis": [1, 2], "divisor": 2})
    out = tmp_path / "pipe"

    def killed(self, *a, **k):
        raise KeyboardInterrupt  # the kill lands after the first ask, before anything is journaled

    with monkeypatch.context() as m:
        m.setattr(SearchRun, "_finish", killed)
        assert pipeline_cli.main([str(cfg), "--out", str(out), "--no-progress"]) == 130
    search = out / "search"
    assert (search / "config.yaml").is_file() and (search / "controller.json").is_file()
    assert not (search / "journal.jsonl").exists()
    capsys.readouterr()
    assert pipeline_cli.main([str(cfg), "--out", str(out), "--resume", "--no-progress"]) == 0, capsys.readouterr()
    assert "--resume" not in capsys.readouterr().err
    assert [r["index"] for r in Journal(search / "journal.jsonl").read()] == [0, 1]
    assert (out / "report.md").is_file() and sorted(p.name for p in (out / "family").glob("*.yaml")) == [
        "discovered-phi1.yaml", "discovered-phi2.yaml"]


def test_search_start_ignores_a_temp_file_left_by_a_kill(tmp_path, capsys):
    cfg = _config(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / ".config.yaml.x1y2.tmp").write_text("half")  # an atomic write cut off by kill -9
    assert search_cli.main([str(cfg), "--out", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    assert len(Journal(out / "journal.jsonl").read()) == 2


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels: all a decompression bomb needs to be refused."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4)) + chunk(b"IEND", b"")


def _folder(root: Path, size: tuple[int, int] = (20, 20)) -> None:
    from PIL import Image

    for c, name in enumerate(["a", "b"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((size[1], size[0], 3), 50 * c + i, np.uint8)).save(root / name / f"{i}.png")


def test_imagefolder_refuses_a_decompression_bomb_naming_the_file(tmp_path):
    root = tmp_path / "imgs"
    _folder(root)
    bomb = root / "b" / "3.png"
    bomb.write_bytes(_png_header(100_000, 100_000))  # 1e10 pixels: Pillow raises DecompressionBombError
    cfg = DataConfig(source="imagefolder", path=str(root), val_fraction=0.25, resolution=8)
    with pytest.raises(DataError, match=r"3\.png: refused as a possible decompression bomb"):
        load_splits(cfg, None)


def test_imagefolder_treats_the_bomb_warning_as_an_error(tmp_path, monkeypatch, recwarn):
    from PIL import Image

    root = tmp_path / "imgs"
    _folder(root)
    cfg = DataConfig(source="imagefolder", path=str(root), val_fraction=0.25, resolution=8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 20x20 = 400: over the limit, under twice it
    with pytest.raises(DataError, match=r"\.png: refused as a possible decompression bomb .*400 pixels"):
        load_splits(cfg, None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    assert len(load_splits(cfg, None).y_train) == 4
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]

