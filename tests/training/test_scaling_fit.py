"""The fit of the scaling laws (training/scaling_fit.py, `crawlmill plan fit`): run folders of a sweep
(scaling_sweep.py), synthesized from a known loss surface with the training run log's own writers,
give back the laws that made them."""

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.pipeline.config import to_json
from crawlmill.training.config import load_train_config
from crawlmill.training.planner import DEEPSEEK, optimum
from crawlmill.training.runlog import RunLog, write_run_info
from crawlmill.training.scaling_fit import RunResult, fit_scaling, group_by_budget, isoflop_minimum
from crawlmill.training.scaling_sweep import SweepConfig, write_sweep

BUDGETS = [1e17, 3e17, 1e18]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


# --- Synthetic runs from a known loss surface -------------------------------------------------------

E, A, ALPHA = 1.7, 400.0, 0.3
BYTES_PER_TOKEN = 4.2


class Surface:
    """loss = E + A/M^α + B/D^β (+ penalties for lr and batch off their optimum), whose IsoFLOP optimum
    is M_opt = g·C^b exactly: β = α·b/(1 − b), and α·A/(β·B) = g^(α+β)."""

    def __init__(self, g: float, b: float, lr_factor: float = 1.0, batch_factor: float = 1.0):
        self.g, self.b = g, b
        self.beta = ALPHA * b / (1 - b)
        self.B = ALPHA * A / (self.beta * g ** (ALPHA + self.beta))
        self.lr_factor, self.batch_factor = lr_factor, batch_factor  # the true optimum over Equation 1's

    def loss(self, scale: float, tokens: float, lr: float, batch_tokens: float, compute: float) -> float:
        best = optimum(compute)
        off = math.log(lr / (best.lr_opt * self.lr_factor)) ** 2 + math.log(batch_tokens / (best.batch_tokens_opt * self.batch_factor)) ** 2
        return E + A / scale**ALPHA + self.B / tokens**self.beta + 0.01 * off


def synthesize_runs(sweep: Path, surface: Surface) -> None:
    """One run folder per config of the sweep, as a finished training run writes it (training/runlog.py)."""
    for run in json.loads((sweep / "sweep.json").read_text())["runs"]:
        config = load_train_config(str(sweep / run["file"]))
        folder = Path(config.output)
        folder.mkdir(parents=True)
        batch_tokens = config.global_batch_size * config.model.seq_length
        scale = config.model.non_embedding_flops_per_token()
        write_run_info(folder, {
            "config": to_json(config), "model": {"parameters": config.model.parameters(102_400), "M": scale},
            "global_batch_tokens": batch_tokens, "peak_lr": config.optimizer.lr, "train_tokens": config.train_tokens,
            "compute": scale * config.train_tokens, "world_size": 1, "started": datetime.now(timezone.utc).isoformat(),
        })  # fmt: skip
        final = surface.loss(scale, config.train_tokens, config.optimizer.lr, batch_tokens, scale * config.train_tokens)
        steps = round(config.train_tokens / batch_tokens)
        log = RunLog(folder)
        log.write("train", step=1, tokens=batch_tokens, loss=11.0, lr=1e-6, grad_norm=3.0, tokens_per_s=1e5)
        # an earlier validation whose values would move every minimum if the fit read it instead of the last
        early = final + 0.3 * math.log(scale)
        log.write("valid", step=steps // 2, tokens=steps // 2 * batch_tokens, loss=early, bpb=early / math.log(2) / BYTES_PER_TOKEN)
        log.write("train", step=steps, tokens=steps * batch_tokens, loss=final + 0.01, lr=config.optimizer.lr * 0.1, grad_norm=0.3, tokens_per_s=1e5)
        log.write("valid", step=steps, tokens=steps * batch_tokens, loss=final, bpb=final / math.log(2) / BYTES_PER_TOKEN)
        log.write("end", step=steps, tokens=steps * batch_tokens)
        log.close()


def test_fit_recovers_the_allocation_laws_within_2_percent(tmp_path):
    # Not the paper's laws, so that echoing the sweep's centre (Equation 1's M_opt) cannot pass:
    # M_opt = 0.25·C^0.52 (x1.2-1.3 the paper's over these budgets), D_opt = C/M_opt = 4·C^0.48.
    truth = Surface(g=0.25, b=0.52)
    write_sweep(SweepConfig(BUDGETS, points=5), tmp_path / "sweep")
    synthesize_runs(tmp_path / "sweep", truth)
    result = invoke("plan", "fit", tmp_path / "sweep" / "runs", "--json", "--plot", tmp_path / "isoflop.png")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    fits = report["fits"]
    assert fits["model_scale"]["coefficient"] == pytest.approx(0.25, rel=0.02)
    assert fits["model_scale"]["exponent"] == pytest.approx(0.52, rel=0.02)
    assert fits["data_tokens"]["coefficient"] == pytest.approx(4.0, rel=0.02)
    assert fits["data_tokens"]["exponent"] == pytest.approx(0.48, rel=0.02)
    assert fits["model_scale"]["paper"] == {"coefficient": 0.1715, "exponent": 0.5243}
    assert fits["lr"] is None and fits["batch_tokens"] is None  # Equation 1's lr and batch only: nothing to fit
    assert len(report["budgets"]) == 3 and all(b["in_range"] and len(b["runs"]) == 5 for b in report["budgets"])
    for budget in report["budgets"]:  # each minimum near the surface's own
        assert budget["model_scale_opt"] == pytest.approx(0.25 * budget["compute"] ** 0.52, rel=0.02)
    png = (tmp_path / "isoflop.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000

    text = invoke("plan", "fit", tmp_path / "sweep" / "runs")
    assert text.exit_code == 0, text.output
    assert "M_opt  = 0.25" in text.output and "DeepSeek: 0.1715·C^0.5243" in text.output
    assert "η_opt  = not fitted" in text.output


def test_fit_recovers_lr_and_batch_laws_from_a_grid(tmp_path):
    # The true lr optimum is 2x Equation 1's and the batch's 0.5x: the best run of each budget is the
    # grid point that hits them, so η_opt = 0.6236·C^-0.125 and B_opt = 0.146·C^0.3271 come back.
    truth = Surface(g=0.1715, b=0.5243, lr_factor=2.0, batch_factor=0.5)
    budgets = [1e19, 3e19, 1e20]
    write_sweep(SweepConfig(budgets, points=3, lr_factors=[0.5, 1, 2], batch_factors=[0.5, 1, 2]), tmp_path / "grid")
    synthesize_runs(tmp_path / "grid", truth)
    result = invoke("plan", "fit", *sorted((tmp_path / "grid" / "runs").iterdir()), "--json", "--metric", "loss")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    fits = report["fits"]
    assert fits["lr"]["coefficient"] == pytest.approx(2 * DEEPSEEK.lr.coefficient, rel=0.01)
    assert fits["lr"]["exponent"] == pytest.approx(-0.125, rel=0.01)
    for budget in report["budgets"]:
        assert budget["best_run"]["lr"] == pytest.approx(2 * optimum(budget["compute"]).lr_opt, rel=1e-3)
        assert budget["best_run"]["batch_tokens"] == pytest.approx(0.5 * optimum(budget["compute"]).batch_tokens_opt, rel=0.01)
    # The best batches are whole sequences (58.7 -> 59 at 1e19, 124.2 -> 124 at 1e20): ±0.5% per budget
    # tilts the exponent by ~0.003, which the coefficient (the law at C = 1, 19 decades away) turns into
    # ~10%. So the batch law is checked where it was measured, and by its exponent.
    law = fits["batch_tokens"]
    for budget in budgets:
        assert law["coefficient"] * budget ** law["exponent"] == pytest.approx(0.5 * optimum(budget).batch_tokens_opt, rel=0.01)
    assert law["exponent"] == pytest.approx(0.3271, rel=0.02)
    assert fits["model_scale"]["exponent"] == pytest.approx(0.5243, rel=0.02)


def test_an_optimum_between_the_grids_values_is_found_not_the_nearest_value(tmp_path):
    """True optima at 1.4x Equation 1's lr and 0.7x its batch, between the grid's 0.5/1/2: the best grid
    point would give back 1x and Equation 1's law; the parabola through the values tried gives 1.4x, 0.7x."""
    truth = Surface(g=0.1715, b=0.5243, lr_factor=1.4, batch_factor=0.7)
    budgets = [1e19, 1e20]
    write_sweep(SweepConfig(budgets, points=3, lr_factors=[0.5, 1, 2], batch_factors=[0.5, 1, 2]), tmp_path / "grid")
    synthesize_runs(tmp_path / "grid", truth)
    result = invoke("plan", "fit", tmp_path / "grid" / "runs", "--json", "--metric", "loss")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["fits"]["lr"]["coefficient"] == pytest.approx(1.4 * DEEPSEEK.lr.coefficient, rel=0.01)
    assert report["fits"]["lr"]["exponent"] == pytest.approx(-0.125, rel=0.01)
    for budget in report["budgets"]:
        assert budget["best_run"]["lr"] == pytest.approx(optimum(budget["compute"]).lr_opt, rel=1e-3)  # the grid's nearest: 1x
        assert budget["lr_opt"] == pytest.approx(1.4 * optimum(budget["compute"]).lr_opt, rel=1e-3)
        assert budget["batch_tokens_opt"] == pytest.approx(0.7 * optimum(budget["compute"]).batch_tokens_opt, rel=0.01)
        assert budget["interpolated"] == ["lr", "batch_tokens"]
    text = invoke("plan", "fit", tmp_path / "grid" / "runs", "--metric", "loss").output
    assert "η_opt" in text and "(between the values tried)" in text


def run(compute: float, scale: float, value: float, lr: float = 1e-3) -> RunResult:
    return RunResult(f"r-{compute:g}-{scale:g}", compute, scale, compute / scale, lr, 1e6, value)


def test_runs_group_by_compute_within_the_tolerance():
    runs = [run(1.0e18, 1e8, 1), run(1.04e18, 2e8, 1), run(3e18, 1e8, 1), run(1.02e18, 3e8, 1)]
    groups = group_by_budget(runs, tolerance=0.05)
    assert [len(g) for g in groups] == [3, 1]
    assert [len(g) for g in group_by_budget(runs, tolerance=0.01)] == [1, 1, 1, 1]


def test_a_budget_without_a_minimum_says_why():
    assert "at least 3" in isoflop_minimum([run(1e18, 1e8, 2.0), run(1e18, 2e8, 1.9)]).problem
    falling = isoflop_minimum([run(1e18, m, 3.0 - 0.1 * i * i) for i, m in enumerate([1e8, 2e8, 4e8])])
    assert "not convex" in falling.problem and falling.model_scale_opt is None
    # a minimum beyond the largest model is kept but flagged
    edge = isoflop_minimum([run(1e18, m, 2.0 + (math.log(m) - math.log(1e9)) ** 2) for m in (1e8, 2e8, 4e8)])
    assert edge.model_scale_opt == pytest.approx(1e9) and not edge.in_range
    fit = fit_scaling([run(1e18, m, 2.0 + (math.log(m) - math.log(1e9)) ** 2) for m in (1e8, 2e8, 4e8)])
    assert fit.model_scale is None and any("outside the sampled" in n for n in fit.notes) and any("need at least 2" in n for n in fit.notes)


def test_unfinished_runs_are_an_error_unless_skipped(tmp_path):
    write_sweep(SweepConfig([1e17, 1e18], points=3), tmp_path / "s")
    synthesize_runs(tmp_path / "s", Surface(0.1715, 0.5243))
    unfinished = sorted((tmp_path / "s" / "runs").iterdir())[1]
    log = unfinished / "log.jsonl"
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines() if '"end"' not in line))
    result = invoke("plan", "fit", tmp_path / "s" / "runs")
    assert result.exit_code == 2 and unfinished.name in result.output and "unfinished" in result.output
    skipped = invoke("plan", "fit", tmp_path / "s" / "runs", "--skip-unfinished")
    assert f"skipped {unfinished}" in skipped.output
    assert "at least 3" in skipped.output  # its budget is left with two sizes ...
    assert skipped.exit_code == 1 and "nothing fitted" in skipped.output  # ... and one budget fits no law
    log.unlink()  # a run folder without its log (imported, or copied without it): skipped too, not the end of the fit
    assert f"skipped {unfinished}" in invoke("plan", "fit", tmp_path / "s" / "runs", "--skip-unfinished").output
    nothing = invoke("plan", "fit", tmp_path)
    assert nothing.exit_code == 2 and "no run.json" in nothing.output

    assert invoke("plan", "fit", tmp_path / "nosuch").output.count("no such folder") == 1


def test_a_log_cut_off_mid_line_is_an_unfinished_run_and_bad_records_are_named(tmp_path):
    """A run killed (or still writing) mid-record is unfinished, skippable; a line that is not a
    record, a metric that is not a number, a damaged run.json: an error naming the file, no traceback."""
    write_sweep(SweepConfig([1e17, 1e18], points=3), tmp_path / "s")
    synthesize_runs(tmp_path / "s", Surface(0.1715, 0.5243))
    runs = sorted((tmp_path / "s" / "runs").iterdir())
    log = runs[1] / "log.jsonl"
    good = log.read_text()
    lines = [line for line in good.splitlines() if '"end"' not in line]
    log.write_text("".join(line + "\n" for line in lines) + '{"kind": "train", "step": 3, "lo')
    result = invoke("plan", "fit", tmp_path / "s" / "runs")
    assert result.exit_code == 2 and "unfinished" in result.output and f"line, {len(lines) + 1}, is cut off" in " ".join(result.output.split())
    assert f"skipped {runs[1]}" in invoke("plan", "fit", tmp_path / "s" / "runs", "--skip-unfinished").output
    for damage, said in [
        (good.replace('{"kind": "train"', "[1, 2]\n" + '{"kind": "train"', 1), "not a log record"),
        (good.replace('"bpb": ', '"bpb": "abc", "x": '), "the last validation's bpb is 'abc', not a number"),
    ]:
        log.write_text(damage)
        result = invoke("plan", "fit", tmp_path / "s" / "runs")
        assert result.exit_code == 2 and said in " ".join(result.output.split()) and "log.jsonl" in result.output and "Traceback" not in result.output, result.output
    log.write_text(good.replace('"bpb": ', '"bpb": NaN, "x": '))
    result = invoke("plan", "fit", tmp_path / "s" / "runs")
    assert result.exit_code == 2 and "bpb is nan (a diverged run)" in " ".join(result.output.split())
    log.write_text(good)
    (runs[1] / "run.json").write_text("{not json")
    result = invoke("plan", "fit", tmp_path / "s" / "runs")
    assert result.exit_code == 2 and f"{runs[1] / 'run.json'}: not JSON" in " ".join(result.output.split())


def test_a_fit_of_nothing_exits_1_and_writes_no_plot(tmp_path):
    """One budget: no law can be fitted; a script must be able to tell (exit 1), and no plot passes for one."""
    write_sweep(SweepConfig([1e17], points=3), tmp_path / "s")
    synthesize_runs(tmp_path / "s", Surface(0.1715, 0.5243))
    result = invoke("plan", "fit", tmp_path / "s" / "runs", "--plot", tmp_path / "fit.png")
    assert result.exit_code == 1, result.output
    assert "error: nothing fitted: 1 of 1 budget(s) with an IsoFLOP minimum" in " ".join(result.output.split())
    assert "no plot written" in result.output and not (tmp_path / "fit.png").exists()
    as_json = invoke("plan", "fit", tmp_path / "s" / "runs", "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.output[as_json.output.index("{"):as_json.output.rindex("}") + 1])["fits"]["model_scale"] is None
    negative = invoke("plan", "fit", tmp_path / "s" / "runs", "--tolerance", "-1")
    assert negative.exit_code == 2 and "--tolerance -1.0: must be >= 0" in negative.output


def test_a_fit_of_the_learning_rate_alone_still_succeeds_and_plots(tmp_path):
    # one size per budget (no minimum) but the lr varied within two budgets: η_opt is fitted, exit 0
    write_sweep(SweepConfig([1e17, 1e18], points=1, lr_factors=[0.5, 1, 2]), tmp_path / "s")
    synthesize_runs(tmp_path / "s", Surface(0.1715, 0.5243, lr_factor=2.0))
    result = invoke("plan", "fit", tmp_path / "s" / "runs", "--plot", tmp_path / "fit.png")
    assert result.exit_code == 0, result.output
    assert "M_opt  = not fitted" in result.output and "η_opt  = 0.62" in result.output
    assert (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"
    assert invoke("plan", "fit", tmp_path / "s" / "runs", "--plot", tmp_path / "fit.jpg").exit_code == 0
    assert (tmp_path / "fit.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG, as its name says
    bad = invoke("plan", "fit", tmp_path / "s" / "runs", "--plot", tmp_path / "fit.xyz")
    assert bad.exit_code == 2 and ".xyz is not an image format" in bad.output and not (tmp_path / "fit.xyz").exists()
