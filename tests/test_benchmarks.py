"""The benchmark tools' own behaviour: which kvstore they import, what a run
must include, where it writes, what its output says about itself, and how
round trips are placed on CPUs. Tiny sizes, no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/ is not installed: reach it from the checkout, behind
# site-packages, so kvstore still comes from the installed build.
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from benchmarks import common, compare, report  # noqa: E402


def _checkout_is_built() -> bool:
    import importlib.machinery

    return any((ROOT / "kvstore" / f"_engine{suffix}").exists()
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


# ------------------------------------------------------------ which kvstore


@pytest.mark.skipif(_checkout_is_built(), reason="the checkout is built in place: it is the build meant")
def test_run_from_the_checkout_imports_the_installed_build():
    # What `python -m benchmarks.compare` does: the checkout is the working
    # directory, first on sys.path. conftest sets PYTHONSAFEPATH for server
    # subprocesses; drop it so the checkout really is first here.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    out = subprocess.run(
        [sys.executable, "-c", "import benchmarks.compare, kvstore, kvstore._engine; print(kvstore.__file__)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not Path(out.stdout.strip()).is_relative_to(ROOT / "kvstore")


# ------------------------------------------------ arguments and the out folder


def test_a_full_run_writes_the_committed_results_and_needs_every_contender():
    args = compare.parse_args([])
    out, committed = compare.output_folder(args)
    assert (out, committed) == (compare.RESULTS, True)
    required = compare.required_pieces(args, committed)
    assert required == {piece for pieces in compare.PIECES.values() for piece in pieces}


@pytest.mark.parametrize("argv", [["--quick"], ["--skip-network"], ["--skip-memory"]])
def test_a_quick_or_partial_run_writes_a_scratch_folder(argv):
    out, committed = compare.output_folder(compare.parse_args(argv))
    try:
        assert not committed
        assert not Path(out).resolve().is_relative_to(Path(compare.RESULTS).resolve())
        assert os.listdir(out) == []
    finally:
        os.rmdir(out)


def test_out_names_the_folder_and_the_committed_one_counts_as_committed(tmp_path):
    assert compare.output_folder(compare.parse_args(["--quick", "--out", str(tmp_path)])) == \
        (str(tmp_path), False)
    out, committed = compare.output_folder(compare.parse_args(["--quick", "--out", compare.RESULTS]))
    assert committed
    # and then every contender is required, quick or not
    assert "redis-server" in compare.required_pieces(compare.parse_args(["--quick"]), committed)


def test_a_scratch_run_requires_kvstore_and_what_require_names():
    args = compare.parse_args(["--quick"])
    assert compare.required_pieces(args, False) == {"kvstore Engine", "kvstore-server"}
    args = compare.parse_args(["--quick", "--require", "redis", "--require", "cachetools"])
    assert compare.required_pieces(args, False) == {"kvstore Engine", "kvstore-server", "redis-server",
                                                    "cachetools"}
    args = compare.parse_args(["--quick", "--skip-network"])
    assert compare.required_pieces(args, False) == {"kvstore Engine"}


@pytest.mark.parametrize("argv", [
    ["--skip-network", "--require", "redis"],
    ["--quick", "--update-docs"],
    ["--skip-memory", "--update-docs"],
    ["--repeats", "0"],
    ["--require", "mongodb"],
])
def test_contradictory_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        compare.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


# ------------------------------------------------------ the contender check


def _row(*contenders: compare.Contender) -> compare.Row:
    return compare.Row(compare.IN_PROCESS, "get", "ns/op", False, list(contenders))


def test_a_skipped_required_contender_is_an_error_naming_it():
    row = _row(compare.Contender("kvstore", report.SUBJECT, None, skipped="NotImplementedError: no _engine",
                                 needs="kvstore Engine"),
               compare.Contender("dict", report.ANCHOR, lambda: 1.0))
    with pytest.raises(compare.MissingContender, match="kvstore Engine: get / kvstore: NotImplementedError"):
        compare.check_required([row], {"kvstore Engine"}, compare.Unavailable(), committed=False)


def test_an_unavailable_required_piece_is_an_error_before_any_row_uses_it():
    missing = compare.Unavailable()
    missing.reasons["redis-server"] = "NotImplementedError: redis-server is not on PATH"
    with pytest.raises(compare.MissingContender, match="redis-server is not on PATH") as exc:
        compare.check_required([], {"kvstore Engine", "redis-server"}, missing, committed=True)
    assert "--out DIR" in str(exc.value)


def test_a_skipped_optional_contender_is_not_an_error():
    missing = compare.Unavailable()
    missing.reasons["memcached"] = "NotImplementedError: memcached is not on PATH"
    row = _row(compare.Contender("kvstore", report.SUBJECT, lambda: 1.0, needs="kvstore Engine"),
               compare.Contender("pymemcache", report.ANCHOR, None, skipped="memcached is not on PATH",
                                 needs="memcached"))
    compare.check_required([row], {"kvstore Engine", "kvstore-server"}, missing, committed=False)


# ----------------------------------------------------------- whole runs


@pytest.fixture
def tiny(monkeypatch):
    """Quick runs at toy sizes, charts left out unless matplotlib is here."""
    monkeypatch.setattr(compare.Sizes, "quick",
                        classmethod(lambda cls: cls(2_000, 100, 1_000, 10, 1_000, 100, 10, 2, 0.05, 1)))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        monkeypatch.setattr(report, "render_charts", lambda results, out_dir: [])


def test_a_run_without_kvstore_fails_and_writes_nothing(tiny, monkeypatch, tmp_path, capsys):
    real_require = compare.require

    def no_kvstore(module, attr=None):
        if module.startswith("kvstore"):
            raise NotImplementedError(f"{module}.{attr} unavailable: No module named 'kvstore._engine'")
        return real_require(module, attr)

    monkeypatch.setattr(compare, "require", no_kvstore)
    out = tmp_path / "out"
    assert compare.main(["--quick", "--skip-network", "--skip-memory", "--out", str(out)]) == 1
    assert "cannot compare without" in capsys.readouterr().err
    assert not out.exists()


def test_a_quick_run_measures_kvstore_and_says_what_it_was(tiny, tmp_path):
    assert compare.main(["--quick", "--skip-network", "--skip-memory", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "comparison.json").read_text())
    assert results["settings"]["quick"] is True
    assert results["settings"]["commit"] == compare.checkout_commit()
    for row in results["rows"]:
        kvstore = next(c for c in row["contenders"] if c["role"] == report.SUBJECT)
        assert kvstore["skipped"] is None and kvstore["samples"], row["title"]
    table = (tmp_path / "comparison.md").read_text()
    assert "QUICK run" in table and f"commit {results['settings']['commit']}" in table


# ---------------------------------------------------------------- report


def _results(quick: bool) -> dict:
    long_title = "reclaim 1,000,000 keys expiring at one instant: time after it until all freed"
    rows = [{"section": compare.MEMORY, "title": title, "unit": "ms", "higher_is_better": False, "note": "",
             "contenders": [{"name": "kvstore", "role": report.SUBJECT, "median": 1.0, "samples": [1.0],
                             "skipped": None},
                            {"name": "Redis", "role": report.ANCHOR, "median": 3.0, "samples": [3.0],
                             "skipped": None}]}
            for title in (long_title, "short")]
    return {"machine": {"date": "2026-01-01 00:00 UTC"},
            "settings": {"quick": quick, "repeats": 1, "commit": "abc1234-dirty"}, "rows": rows}


@pytest.mark.parametrize("quick, kind", [(True, "QUICK run"), (False, "Full run")])
def test_the_table_says_which_run_and_commit_made_it(quick, kind):
    first = report.render_markdown(_results(quick)).splitlines()[0]
    assert kind in first and "commit abc1234-dirty" in first and "2026-01-01" in first


def test_the_summary_chart_has_a_title_and_keeps_every_label_whole(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    saved = {}
    real_savefig = Figure.savefig

    def keep(fig, path, **kwargs):
        saved[os.path.basename(path)] = (fig, kwargs)
        return real_savefig(fig, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    results = _results(quick=True)
    paths = report.render_charts(results, str(tmp_path))
    assert all(os.path.getsize(p) > 0 for p in paths)
    fig, kwargs = saved["summary.png"]
    assert kwargs.get("bbox_inches") == "tight"  # cropped to what is drawn, nothing cut
    ax = fig.axes[0]
    assert "best anchor" in ax.get_title() and report.provenance(results) in ax.get_title()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert all(len(line) <= report._LABEL_WIDTH for label in labels for line in label.split("\n"))
    wanted = {f"Memory and expiry: {row['title']}" for row in results["rows"]}
    assert {label.replace("\n", " ") for label in labels} == wanted


# ------------------------------------------------------- asv side helpers


def test_settle_runs_tick_until_nothing_is_pending():
    class TickingEngine:
        calls = 0

        def tick(self, budget_ms):
            self.calls += 1
            return self.calls < 3

    engine = TickingEngine()
    common.settle(engine)
    assert engine.calls == 3


@pytest.mark.skipif(not common.can_pin(), reason="needs sched_setaffinity and 2+ CPUs")
def test_round_trips_run_client_and_server_on_one_cpu():
    from benchmarks import server

    before = os.sched_getaffinity(0)
    bench = server.RoundTrips()
    try:
        bench.setup()
        srv = common._MEMO["kvstore-server"][0]
        cpus = os.sched_getaffinity(0)
        assert len(cpus) == 1
        for pid in (os.getpid(), srv.pid):
            for tid in os.listdir(f"/proc/{pid}/task"):
                assert os.sched_getaffinity(int(tid)) == cpus
        bench.time_get()  # the pinned pair still answers
    finally:
        srv, client, _ = common._MEMO.pop("kvstore-server")
        client.close()
        srv.stop()
        common.pin([os.getpid()], before)
