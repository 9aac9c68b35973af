"""Nothing journaled is ever deleted: resume and report refuse a bad line, set aside only a torn last line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny import SPACE_K35, write_search_config

from nas import report as report_cli
from nas import search as search_cli
from nas.config import load_config
from nas.journal import Journal, JournalError, check_search_record
from nas.search import run_search

BUDGET = 20


def _write_config(folder: Path) -> Path:
    return write_search_config(folder, SPACE_K35,
                               controller={"name": "evolution", "options": {"population_size": 4, "sample_size": 2}},
                               data={"subset": 200}, train={"steps": 2}, search={"budget": BUDGET, "seed": 3})


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A finished 20-evaluation run (config, run folder), made once; tests work on copies."""
    base = tmp_path_factory.mktemp("journal")
    cfg_path = _write_config(base)
    run_search(load_config(cfg_path, [f"out={base / 'run'}"]), progress=False)
    return cfg_path, base / "run"


@pytest.fixture
def run(finished, tmp_path) -> tuple[Path, Path]:
    cfg_path, src = finished
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return cfg_path, dst


def _resume(cfg: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    rc = search_cli.main([str(cfg), "--out", str(out), "--resume", "--no-progress", *extra])
    return rc, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _corrupt_line_10(path: Path) -> bytes:
    lines = path.read_text().splitlines(keepends=True)
    lines[9] = lines[9][:30] + '"X{{' + lines[9][30:]  # the reproduction
    data = "".join(lines).encode()
    path.write_bytes(data)
    return data


def test_finished_run_has_twenty_valid_records(run):
    _, out = run
    records = Journal(out / "journal.jsonl", check_search_record).read()
    assert [r["index"] for r in records] == list(range(BUDGET))


def test_resume_refuses_a_corrupt_middle_line_and_keeps_every_byte(run, capsys):
    cfg, out = run
    journal = out / "journal.jsonl"
    corrupted = _corrupt_line_10(journal)
    state = (out / "controller.json").read_bytes()
    rc, err = _resume(cfg, out, capsys)
    line = _one_line(err)
    assert rc == 2 and f"{journal} line 10" in line and "not valid JSON" in line
    assert journal.read_bytes() == corrupted and corrupted.count(b"\n") == BUDGET  # all 20 lines, byte for byte
    assert (out / "controller.json").read_bytes() == state
    assert not list(out.glob("journal.jsonl.torn*"))


def test_report_refuses_a_corrupt_middle_line_instead_of_a_shorter_report(run, capsys):
    _, out = run
    before = (out / "report.md").read_bytes()
    _corrupt_line_10(out / "journal.jsonl")
    rc = report_cli.main([str(out)])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and "journal.jsonl line 10" in line
    assert (out / "report.md").read_bytes() == before  # the full report of 20 stays; no shortened one


BAD_RECORDS = {
    "garbled genotype": lambda r: {**r, "genotype": "relu_r8:stem_c8_k3_s1:zz_r1:head_c32"},
    "missing reward": lambda r: {k: v for k, v in r.items() if k != "reward"},
    "accuracy as text": lambda r: {**r, "accuracy": "0.5"},
    "unknown status": lambda r: {**r, "status": "great"},
    "duplicated index": lambda r: {**r, "index": r["index"] - 1},
    "negative macs": lambda r: {**r, "macs": -5},
    "genotype as number": lambda r: {**r, "genotype": 7},
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_valid_json_that_is_not_a_record_is_refused_with_its_line(run, case):
    _, out = run
    journal = out / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    lines[4] = json.dumps(BAD_RECORDS[case](json.loads(lines[4]))) + "\n"
    data = "".join(lines).encode()
    journal.write_bytes(data)
    with pytest.raises(JournalError, match=r"journal.jsonl line 5 .*not a valid record"):
        Journal(journal, check_search_record).read(repair=True)
    assert journal.read_bytes() == data


@pytest.mark.parametrize("line", [b"NaN\n", b"[1, 2]\n", b"\n", b'{"index": 5, "genotype": "\xff"}\n',
                                  b'{"index": 5, "reward": NaN}\n'])
def test_odd_middle_lines_are_refused_and_left_in_place(run, line):
    _, out = run
    journal = out / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[5] = line
    data = b"".join(lines)
    journal.write_bytes(data)
    with pytest.raises(JournalError, match=r"journal.jsonl line 6 \(file left as it is\)"):
        Journal(journal, check_search_record).read(repair=True)
    assert journal.read_bytes() == data


def test_resume_refuses_a_garbled_genotype_in_one_line(run, capsys):
    cfg, out = run
    journal = out / "journal.jsonl"
    data = journal.read_bytes().replace(b'"genotype": "relu_r8:', b'"genotype": "relu_r8:??', 1)
    journal.write_bytes(data)
    rc, err = _resume(cfg, out, capsys)
    assert rc == 2 and "line 1" in _one_line(err) and "does not parse" in err
    assert journal.read_bytes() == data


def test_torn_last_line_is_set_aside_and_appends_start_a_new_line(run, capsys):
    cfg, out = run
    journal = out / "journal.jsonl"
    original = journal.read_bytes()
    torn = b'{"index": 20, "genotype": "relu_r8:stem_c8_k3'  # a write killed mid-line
    journal.write_bytes(original + torn)
    rc, err = _resume(cfg, out, capsys, "--set", f"search.budget={BUDGET + 1}")
    assert rc == 0, err
    data = journal.read_bytes()
    assert data.startswith(original) and data.count(b"\n") == BUDGET + 1 and data.endswith(b"\n")
    assert (out / "journal.jsonl.torn-1").read_bytes() == torn  # set aside, not deleted
    records = Journal(journal, check_search_record).read()
    assert [r["index"] for r in records] == list(range(BUDGET + 1))
    # A second torn write is kept beside the first, not over it.
    journal.write_bytes(data + b'{"ind')
    assert len(Journal(journal, check_search_record).read(repair=True)) == BUDGET + 1
    assert (out / "journal.jsonl.torn-1").read_bytes() == torn
    assert (out / "journal.jsonl.torn-2").read_bytes() == b'{"ind' and journal.read_bytes() == data


def test_complete_last_record_without_newline_is_kept(run, capsys):
    cfg, out = run
    journal = out / "journal.jsonl"
    original = journal.read_bytes()
    journal.write_bytes(original[:-1])  # the record is whole; only its newline is missing
    rc, err = _resume(cfg, out, capsys, "--set", f"search.budget={BUDGET + 2}")
    assert rc == 0, err
    data = journal.read_bytes()
    assert data.startswith(original) and data.count(b"\n") == BUDGET + 2
    assert [r["index"] for r in Journal(journal, check_search_record).read()] == list(range(BUDGET + 2))
    assert not list(out.glob("journal.jsonl.torn*"))


def test_complete_last_line_that_is_not_a_record_is_refused_not_set_aside(run):
    _, out = run
    journal = out / "journal.jsonl"
    data = journal.read_bytes() + b'{"index": 20}'
    journal.write_bytes(data)
    with pytest.raises(JournalError, match="line 21 .*not a valid record"):
        Journal(journal, check_search_record).read(repair=True)
    assert journal.read_bytes() == data and not list(out.glob("journal.jsonl.torn*"))


def test_report_reads_past_a_torn_last_line_and_says_so(run, capsys):
    _, out = run
    journal = out / "journal.jsonl"
    data = journal.read_bytes() + b'{"index": 20, "gen'
    journal.write_bytes(data)
    assert report_cli.main([str(out)]) == 0
    err = capsys.readouterr().err
    assert "cut off mid-write" in err and "error" not in err
    assert f"evaluations: {BUDGET} of budget {BUDGET}" in (out / "report.md").read_text()
    assert journal.read_bytes() == data  # reporting never changes the journal


def test_resume_refuses_a_journal_with_non_utf8_bytes(run, capsys):
    cfg, out = run
    journal = out / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"status": "', b'"status": "\xff', 1)
    data = b"".join(lines)
    journal.write_bytes(data)
    rc, err = _resume(cfg, out, capsys)
    line = _one_line(err)
    assert rc == 2 and "line 3" in line and "not UTF-8" in line and journal.read_bytes() == data


@pytest.mark.parametrize("content", [b"", b"{}", b'{"journal_len": 20, "state": {"contr', b"[]",
                                     b'{"journal_len": "20", "state": {}}', b'{"journal_len": 20, "state": {}}',
                                     b'{"journal_len": 20, "state": {"controller": "evolution", "version": 1}}'])
def test_resume_refuses_a_broken_controller_state_in_one_line(run, capsys, content):
    cfg, out = run
    journal = out / "journal.jsonl"
    before = journal.read_bytes()
    (out / "controller.json").write_bytes(content)
    rc, err = _resume(cfg, out, capsys)
    line = _one_line(err)
    assert rc == 2 and "cannot resume" in line and "controller.json" in line
    assert journal.read_bytes() == before


def test_resume_refuses_a_state_ahead_of_the_journal_without_touching_it(run, capsys):
    cfg, out = run
    journal = out / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    data = b"".join(lines[:-1]) + lines[-1][:25]  # last record torn: the state is one evaluation ahead
    journal.write_bytes(data)
    rc, err = _resume(cfg, out, capsys)
    assert rc == 2 and "at evaluation 20 but the journal has only 19" in _one_line(err)
    assert journal.read_bytes() == data and not list(out.glob("journal.jsonl.torn*"))
