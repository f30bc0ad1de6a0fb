import pytest

from msl import grid

FIXTURE = "tests/fixtures/study/grid.yaml"


def test_fixture_grid_expands_to_four_distinct_cells():
    g = grid.load(FIXTURE)
    cells = g.cells()
    assert len(cells) == 4  # (size 0, D 16) is shared by both scans and trained once
    shared = [scans for cfg, scans in cells if len(scans) == 2]
    assert shared == [("data", "params")]
    assert len({cfg.cell_id for cfg, _ in cells}) == 4
    assert all(cfg.record_dir.endswith("records") for cfg, _ in cells)


def test_budget_check_adds_both_ends_with_more_epochs(tmp_path):
    (tmp_path / "grid.yaml").write_text(
        "fixed: {epochs: 10}\n"
        "scans:\n  data: {axis: n_train, n_train: [10, 20, 40], budget_check: 2}\n")
    cells = grid.load(tmp_path).cells()
    budget = [cfg for cfg, scans in cells if scans == ("data/budget",)]
    assert sorted((c.n_train, c.epochs) for c in budget) == [(10, 20), (40, 20)]
    assert grid.load(tmp_path).study == tmp_path.name


@pytest.mark.parametrize("text, word", [
    ("scans:\n  d: {axis: n_train, n_train: [1, 2], lr: 3}\n", "lr"),
    ("scans:\n  d: {axis: n_train, n_train: [10]}\n", "at least two"),
    ("scans:\n  d: {n_train: [10, 20]}\n", "axis"),
    ("scanz: {}\n", "scanz"),
    ("scans:\n  d: {axis: n_train, n_train: [10, 20], max_lr: -1.0}\n", "max_lr"),
    ("scans:\n  d: {axis: n_train, n_train: [10, 20], budget_check: 0.5}\n", "budget_check"),
    ("scans: [\n", "YAML"),
])
def test_bad_grids_fail_loudly(tmp_path, text, word):
    (tmp_path / "grid.yaml").write_text(text)
    with pytest.raises(ValueError, match=word):
        grid.load(tmp_path).cells()


def test_missing_grid_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="grid.yaml"):
        grid.load(tmp_path)


@pytest.mark.parametrize("path", ["grids/trikha-omat24", "grids/spectral-optimetal",
                                  "book/default", "book/spectral", "book/trikha"])
def test_shipped_grids_are_valid(path):
    """Every grid in the repository parses, and every one of its cells is a valid config
    (the GPU grids too: CUDA need not be present to validate them)."""
    cells = grid.load(path).cells()
    assert cells and all(cfg.cell_id for cfg, _ in cells)


def test_budget_check_doubles_cap_and_patience_under_early_stopping(tmp_path):
    (tmp_path / "grid.yaml").write_text(
        "fixed: {max_steps: 1000, eval_every: 50, patience: 4, schedule: wsd, epochs: 3}\n"
        "scans:\n  data: {axis: n_train, n_train: [10, 20, 40], budget_check: 2}\n")
    budget = [cfg for cfg, scans in grid.load(tmp_path).cells() if scans == ("data/budget",)]
    assert sorted((c.n_train, c.max_steps, c.patience, c.epochs) for c in budget) == [
        (10, 2000, 8, 3), (40, 2000, 8, 3)]


def test_end_seeds_add_seeds_at_both_ends_only(tmp_path):
    """``end_seeds``: the ends of the axis get every listed seed, the inside keeps ``seed``;
    the budget checks stay with the scan's own seed."""
    (tmp_path / "grid.yaml").write_text(
        "study: s\nfixed: {max_steps: 100, eval_every: 10, patience: 2}\n"
        "scans:\n  data: {axis: n_train, n_train: [16, 32, 64], size: 0, end_seeds: [0, 1, 2],"
        " budget_check: 2}\n")
    g = grid.load(tmp_path)
    cells = [(cfg.n_train, cfg.seed, scans) for cfg, scans in g.cells()]
    base = sorted((d, s) for d, s, scans in cells if "data" in scans)
    assert base == [(16, 0), (16, 1), (16, 2), (32, 0), (64, 0), (64, 1), (64, 2)]
    assert sorted((d, s) for d, s, scans in cells if "data/budget" in scans) == [(16, 0), (64, 0)]


def test_end_seeds_must_be_seeds(tmp_path):
    (tmp_path / "grid.yaml").write_text(
        "scans:\n  data: {axis: n_train, n_train: [16, 32], end_seeds: 3}\n")
    with pytest.raises(ValueError, match="end_seeds=3"):
        grid.load(tmp_path)


def test_compare_names_a_study_folder_or_stops(tmp_path):
    from msl import grid as grids

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "grid.yaml").write_text("scans: {data: {axis: n_train, n_train: [8, 16]}}\n")
    (tmp_path / "this").mkdir()
    spec = "compare: {}\nscans: {{data: {{axis: n_train, n_train: [8, 16]}}}}\n"
    (tmp_path / "this" / "grid.yaml").write_text(spec.format("../other"))
    assert grids.load(tmp_path / "this").compare == (tmp_path / "other").resolve()
    (tmp_path / "this" / "grid.yaml").write_text(spec.format("../missing"))
    with pytest.raises(ValueError, match="compare: '../missing' is not a study folder"):
        grids.load(tmp_path / "this")
