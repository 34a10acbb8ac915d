"""The planner (training/planner.py, `crawlmill plan`): Equation 1 and the allocation against numbers
computed by hand, the paper's 7B and 67B rows (Table 2, Table 3), the shape and batch rules."""

import json
import math
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.training.config import builtin_model
from crawlmill.training.model_config import ModelConfig
from crawlmill.training.planner import DEEPSEEK, global_batch, model_scales, optimum, plan_compute, rule_depth, sci, snap_model, swiglu_ffn


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def plan_json(*args) -> dict:
    result = invoke("plan", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_equation_1_and_allocation_at_1e20():
    # 0.3118·1e20^-0.125 etc., evaluated independently (python3 -c, float64)
    best = optimum(1e20)
    assert best.lr_opt == pytest.approx(9.859981744e-4, rel=1e-9)
    assert best.batch_tokens_opt == pytest.approx(1.0171449599e6, rel=1e-9)
    assert best.model_scale_opt == pytest.approx(5.2512672888e9, rel=1e-9)
    assert best.data_tokens_opt == pytest.approx(1.9045296021e10, rel=1e-9)
    for compute in (1e17, 1e21, 1e24):  # the allocation spends C: 0.1715 x 5.8316 = 1.0001, exponents sum to 1
        best = optimum(compute)
        assert best.model_scale_opt * best.data_tokens_opt == pytest.approx(compute, rel=2e-4)
    with pytest.raises(ValueError, match="positive"):
        optimum(0)


def test_deepseek_7b_row_against_the_paper():
    report = plan_json("--model", "deepseek-7b", "--tokens", "2e12")
    # M, 6N1, 6N2 of 30 layers x 4096, l_seq 4096, vocabulary 102,400 (by hand)
    assert report["M"] == 72 * 30 * 4096**2 + 12 * 30 * 4096 * 4096 == 42_278_584_320
    assert report["six_n1"] == 36_238_786_560 and report["six_n2"] == 38_755_368_960
    assert report["compute"] == pytest.approx(8.455716864e22)
    # What Equation 1 gives for C = M·D, exactly ...
    assert report["lr_opt"] == pytest.approx(4.2460e-4, rel=1e-4)
    assert report["batch_tokens_opt"] / 4096 == pytest.approx(2251.61, rel=1e-5)
    assert report["global_batch_size"] == 2252
    # ... and against the paper's Table 2 (4.2e-4, 2304 sequences): 4.246e-4 is 4.2e-4 to the paper's two
    # digits (+1.1%); 2304 = 9 x 256 is 2.3% above 2251.6, a hardware-friendly round number. 3% holds both.
    assert report["lr_opt"] == pytest.approx(4.2e-4, rel=0.03)
    assert report["global_batch_size"] == pytest.approx(2304, rel=0.03)
    assert (report["config_lr"], report["config_global_batch_size"]) == (4.2e-4, 2304)


def test_deepseek_67b_row_against_the_paper():
    report = plan_json("--model", "deepseek-67b", "--tokens", "2e12")
    assert report["M"] == 72 * 95 * 8192**2 + 12 * 95 * 8192 * 4096 == 497_276_682_240
    assert report["six_n1"] == 459_024_629_760 and report["six_n2"] == 464_057_794_560
    assert report["lr_opt"] == pytest.approx(3.1201e-4, rel=1e-4)
    assert report["global_batch_size"] == 5043  # 5,042.5 sequences of 4096
    # The paper trained the 67B at 3.2e-4 (Equation 1: 2.5% lower) and 4608 sequences (Equation 1: 9.4%
    # more). The report's Figure 3 shows a wide band of near-optimal batch sizes and learning rates around
    # the fitted lines, and 4608 = 2 x 2304 reads as a rounding to the 7B's batch: Equation 1 is not what
    # the 67B used to the digit, so the tolerance is what that gap is, not tighter: 3% and 10%.
    assert report["lr_opt"] == pytest.approx(3.2e-4, rel=0.03)
    assert report["global_batch_size"] == pytest.approx(4608, rel=0.10)


def test_text_output_shows_the_table_3_columns():
    result = invoke("plan", "--model", "deepseek-7b", "--tokens", "2e12")
    assert result.exit_code == 0, result.output
    for text in ("4.228e10", "3.624e10", "3.876e10", "8.456e22", "4.25e-4", "global batch 2,252", "config: 2,304"):
        assert text in result.output, text


def test_model_report_gives_the_memory_per_gpu_for_the_layout():
    """training/memory.py's estimate for the config's layout and the given data-parallel ranks (the
    estimate itself: tests/training/test_memory.py); the micro batch is the config's unless given."""
    from crawlmill.training.config import load_train_config
    from crawlmill.training.memory import estimate_memory

    report = plan_json("--model", "deepseek-7b", "--tokens", "2e12", "--data-parallel", "64")
    assert report["memory"]["total"] == estimate_memory(load_train_config("deepseek-7b"), 102_400, 64).total
    assert report["memory"]["bytes_per_parameter"] == 6 + 12 / 64 and report["memory"]["layout"]["data"] == 64
    assert report["memory"]["fits_h100"] and not plan_json("--model", "deepseek-7b", "--tokens", "2e12")["memory"]["fits_h100"]  # 61 GiB; 137 on one GPU
    alone = " ".join(invoke("plan", "--model", "deepseek-7b", "--tokens", "2e12").output.split())
    assert "more than an 80 GB H100 holds: more data-parallel ranks (--data-parallel N" in alone, alone
    one_b = plan_json("--model", "1b", "--tokens", "2e10")
    assert one_b["memory"]["layout"]["micro_batch_size"] == 4  # the 1b config's
    two = plan_json("--model", "1b", "--tokens", "2e10", "--micro-batch-size", "2")
    assert two["memory"]["activations"] == pytest.approx(one_b["memory"]["activations"] / 2, rel=0.01) and two["batch_multiple"]["micro_batch_size"] == 2
    text = invoke("plan", "--model", "deepseek-67b", "--tokens", "2e12", "--data-parallel", "16").output
    assert "memory per GPU" in text and "tensor 8, pipeline 5, context 1, data 16" in text and "80 GB H100" not in text, text
    planned = plan_json("--compute", "1e20", "--micro-batch-size", "2", "--data-parallel", "8")  # the planned shape's, too
    assert planned["memory"]["parameters"] == planned["parameters"]["total"] and planned["memory"]["layout"]["micro_batch_size"] == 2
    assert planned["memory"]["bytes_per_parameter"] == 6 + 12 / 8


def test_a_config_without_a_vocabulary_is_said_to_be_planned_at_deepseeks():
    """tiny takes its vocabulary from its data's tokenizer: the plan says it assumed 102,400, and
    --vocab-size gives the real one (a config that names its own, deepseek-7b, says nothing)."""
    def model_line(*args: str) -> str:
        return invoke("plan", "--tokens", "1e9", *args).output.splitlines()[0]

    assert model_line("--model", "tiny").endswith("vocabulary 102,400 (DeepSeek's: the config takes its data's; --vocab-size N for yours)")
    assert model_line("--model", "tiny", "--vocab-size", "1024").endswith("vocabulary 1,024")
    assert model_line("--model", "deepseek-7b").endswith("vocabulary 102,400")
    assert plan_json("--model", "tiny", "--tokens", "1e9", "--vocab-size", "1024")["vocab_size"] == 1024


def test_model_scales_counts_vocab_once_like_the_paper():
    model = builtin_model("1b")
    scales = model_scales(model, vocab_size=50_000)
    assert scales["six_n2"] - scales["six_n1"] == 6 * 50_000 * 2048
    assert scales["M"] == model.non_embedding_flops_per_token()


@pytest.mark.parametrize("name", ["deepseek-7b", "deepseek-67b"])
def test_the_shape_rule_gives_back_deepseeks_own_shapes(name):
    model = builtin_model(name)
    snapped = snap_model(model.non_embedding_flops_per_token(), model.seq_length)
    assert (snapped.num_layers, snapped.hidden_size, snapped.num_attention_heads, snapped.ffn_hidden_size) == (
        model.num_layers, model.hidden_size, model.num_attention_heads, model.ffn_hidden_size)  # fmt: skip


def test_swiglu_ffn_rounds_8_thirds_up_to_256():
    assert swiglu_ffn(4096) == 11008 and swiglu_ffn(8192) == 22016 and swiglu_ffn(768) == 2048
    assert swiglu_ffn(1664) == 4608  # 4437.3 -> 18 x 256


@pytest.mark.parametrize("compute", [1e17, 3e18, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25])
def test_planned_shapes_are_real_and_close_to_m_opt(compute):
    plan = plan_compute(compute)
    m = plan.model
    assert m.hidden_size % 128 == 0 and m.head_dim == 128 and m.num_attention_heads * 128 == m.hidden_size
    assert m.ffn_hidden_size % 256 == 0 and 0 <= m.ffn_hidden_size - 8 * m.hidden_size / 3 < 256
    assert plan.model_scale == m.non_embedding_flops_per_token()
    assert 0.5 <= m.num_layers / rule_depth(m.hidden_size) <= 2
    # whole layers at a few layers deep: the small budgets are coarser
    assert abs(plan.model_scale_deviation) < (0.06 if compute < 1e20 else 0.02)
    assert plan.data_tokens == pytest.approx(compute / plan.model_scale)


@pytest.mark.parametrize("compute", [1e17, 1e21, 1e22, 1e24, 1e25])
@pytest.mark.parametrize("tensor, pipeline", [(2, 1), (8, 1), (8, 4), (1, 8)])
def test_shapes_planned_for_tensor_and_pipeline_parallelism_split_evenly(compute, tensor, pipeline):
    """1e24 gave 71 heads (a prime): no tensor split. With T and P given, heads and ffn divide by T,
    layers by P, and the shape stays near M_opt where the budget is large enough for the grain."""
    plan = plan_compute(compute, tensor_parallel=tensor, pipeline_parallel=pipeline)
    m = plan.model
    assert m.num_attention_heads % tensor == 0 and m.ffn_hidden_size % tensor == 0 and m.num_layers % pipeline == 0
    assert m.hidden_size == 128 * m.num_attention_heads and m.ffn_hidden_size % 256 == 0 and m.ffn_hidden_size >= 8 * m.hidden_size / 3
    # Near M_opt at every budget (1e17 with T 8 gave 1 x 65536, +66,447%: no width passed the depth
    # bound), or the smallest shape T and P allow (P layers of 128·T) where even that is larger.
    smallest = 72 * pipeline * (128 * tensor) ** 2 + 12 * pipeline * 128 * tensor * 4096
    assert 0.5 * plan.optimum.model_scale_opt <= plan.model_scale <= max(2 * plan.optimum.model_scale_opt, smallest), (m.num_layers, m.hidden_size)
    if compute >= 1e22:
        assert abs(plan.model_scale_deviation) < 0.05 and 0.5 <= m.num_layers / rule_depth(m.hidden_size) <= 2
    result = CliRunner().invoke(app, ["plan", "--compute", str(compute), "--tensor-parallel", str(tensor), "--pipeline-parallel", str(pipeline), "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["model"]["num_attention_heads"] == m.num_attention_heads
    assert (report["memory"]["layout"]["tensor"], report["memory"]["layout"]["pipeline"]) == (tensor, pipeline)


def test_a_1e24_plan_fits_an_h100_only_once_split():
    alone = json.loads(CliRunner().invoke(app, ["plan", "--compute", "1e24", "--data-parallel", "4096", "--json"]).stdout)
    assert alone["model"]["num_attention_heads"] == 71 and not alone["memory"]["fits_h100"]
    split = json.loads(CliRunner().invoke(app, ["plan", "--compute", "1e24", "--tensor-parallel", "8", "--pipeline-parallel", "4", "--data-parallel", "128", "--json"]).stdout)
    assert split["model"]["num_attention_heads"] % 8 == 0 and split["model"]["num_layers"] % 4 == 0 and split["memory"]["fits_h100"]
    text = CliRunner().invoke(app, ["plan", "--compute", "1e24"]).output
    assert "--tensor-parallel N, --pipeline-parallel N" in " ".join(text.split())
    bad = CliRunner().invoke(app, ["plan", "--compute", "1e20", "--tensor-parallel", "0"])
    assert bad.exit_code == 2 and "--tensor-parallel 0: must be at least 1" in bad.output
    wide = CliRunner().invoke(app, ["plan", "--compute", "1e20", "--tensor-parallel", "513"])
    assert wide.exit_code == 2 and "tensor parallel 513: at most 512" in wide.output
    # An existing model on a tensor size that does not divide it: refused, as `crawlmill train` refuses it.
    uneven = CliRunner().invoke(app, ["plan", "--model", "deepseek-7b", "--tokens", "2e12", "--tensor-parallel", "3"])
    assert uneven.exit_code == 2 and "model.num_attention_heads 32, model.ffn_hidden_size 11008 not a multiple of parallel.tensor 3" in " ".join(uneven.output.split())


def test_planned_models_grow_with_compute():
    scales = [plan_compute(10**e).model_scale for e in range(17, 26)]
    assert scales == sorted(scales)


def test_global_batch_is_a_whole_multiple_of_micro_batch_times_data_parallel():
    assert global_batch(1e6, 4096) == 244  # 244.1 sequences
    assert global_batch(1e6, 4096, micro_batch_size=4, data_parallel=8) == 256  # 244.1 -> nearest multiple of 32
    assert global_batch(1e3, 4096, micro_batch_size=2, data_parallel=3) == 6  # never below one multiple
    with pytest.raises(ValueError):
        global_batch(1e6, 4096, micro_batch_size=0)


def test_plan_compute_json_has_the_keys_and_a_loadable_shape():
    report = plan_json("--compute", "1e20", "--micro-batch-size", "2", "--data-parallel", "8")
    for key in ("compute", "lr_opt", "batch_tokens_opt", "model_scale_opt", "data_tokens_opt", "model", "global_batch_size"):
        assert key in report
    assert report["compute"] == 1e20 and report["lr_opt"] == pytest.approx(9.86e-4, rel=1e-3)
    model = ModelConfig(**report["model"])
    assert model.non_embedding_flops_per_token() == report["model_scale"]
    assert report["model_scale"] / report["model_scale_opt"] - 1 == pytest.approx(report["model_scale_deviation"])
    assert report["global_batch_size"] % 16 == 0 and report["global_batch_size"] == 256  # 248.3 -> 16 x 16
    assert report["global_batch_tokens"] == 256 * 4096


def test_seq_length_changes_m_and_the_batch_in_sequences():
    short = plan_json("--compute", "1e20", "--seq-length", "2048")
    assert short["model"]["seq_length"] == 2048
    assert short["global_batch_size"] == round(1.0171449599e6 / 2048)
    seven = plan_json("--model", "deepseek-7b", "--tokens", "2e12", "--seq-length", "2048")
    assert seven["M"] == 72 * 30 * 4096**2 + 12 * 30 * 4096 * 2048


@pytest.mark.parametrize(
    "args, message",
    [
        (["--compute", "1e20", "--model", "1b", "--tokens", "1e9"], "not both"),
        (["--tokens", "1e9"], "--model NAME with --tokens"),
        (["--model", "nope", "--tokens", "1e9"], "--model nope: not a built-in"),
        (["--compute", "-5"], "positive"),
        (["--model", "1b", "--tokens", "0"], "tokens 0.0: must be > 0"),
        # counts of 0 once fell back to the defaults silently, negative ones printed a plan or "math domain error"
        (["--compute", "1e20", "--seq-length", "0"], "--seq-length 0: must be at least 1"),
        (["--compute", "1e20", "--seq-length", "-4096"], "--seq-length -4096: must be at least 1"),
        (["--compute", "1e20", "--vocab-size", "0"], "--vocab-size 0: must be at least 1"),
        (["--compute", "1e20", "--micro-batch-size", "0"], "--micro-batch-size 0: must be at least 1"),
        (["--compute", "1e20", "--data-parallel", "0"], "--data-parallel 0: must be at least 1"),
        (["--model", "tiny", "--tokens", "1e9", "--vocab-size", "-5"], "--vocab-size -5: must be at least 1"),
        (["--model", "tiny", "--tokens", "1e9", "--seq-length", "0"], "--seq-length 0: must be at least 1"),
        (["--model", "tiny", "--tokens", "1e9", "--micro-batch-size", "0"], "--micro-batch-size 0: must be at least 1"),
    ],
)
def test_bad_input_exits_2(args, message):
    result = invoke("plan", *args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_sci_formats_as_the_paper():
    assert sci(4.2278584320e10) == "4.228e10" and sci(1e17, 3) == "1e17" and sci(3.2e-4, 3) == "3.20e-4"


def test_planner_imports_no_torch_megatron_or_matplotlib():
    code = (
        "import sys, crawlmill.training.planner, crawlmill.training.scaling_fit, crawlmill.training.scaling_sweep, crawlmill.plan_cli\n"
        "from typer.testing import CliRunner\n"
        "assert CliRunner().invoke(crawlmill.plan_cli.app, ['--model', '1b', '--tokens', '2e10']).exit_code == 0\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'megatron', 'matplotlib', 'ray'})\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_laws_are_the_papers():
    assert (DEEPSEEK.lr.coefficient, DEEPSEEK.lr.exponent) == (0.3118, -0.1250)
    assert (DEEPSEEK.batch_tokens.coefficient, DEEPSEEK.batch_tokens.exponent) == (0.2920, 0.3271)
    assert (DEEPSEEK.model_scale.coefficient, DEEPSEEK.model_scale.exponent) == (0.1715, 0.5243)
    assert (DEEPSEEK.data_tokens.coefficient, DEEPSEEK.data_tokens.exponent) == (5.8316, 0.4757)
    assert math.isclose(DEEPSEEK.model_scale(1e20) * DEEPSEEK.data_tokens(1e20), 1e20, rel_tol=2e-4)


def test_a_plan_says_where_it_leaves_what_the_laws_stand_on():
    """`plan --compute 1e10` printed a 1-layer model 250x M_opt and a batch 7.5x B_opt without a word."""
    assert plan_compute(1e17).warnings() == [] and plan_compute(1e20).warnings() == [] and plan_compute(1e24).warnings() == []
    tiny = plan_compute(1e10).warnings()
    assert len(tiny) == 4 and "below the paper's smallest budget (1e17 FLOPs)" in tiny[0]
    assert "closest, 1 x 128, has M 7.471e6" in tiny[1] and "B_opt 5.450e2 tokens" in tiny[3]
    assert "D = C / M = 1.338e3 tokens is less than one global batch (4.096e3 tokens)" in tiny[2]  # nothing to train
    assert [w for w in plan_compute(1e20, data_parallel=512).warnings() if "global batch (512 x 4096" in w]
    huge = plan_compute(1e26).warnings()  # 100x the 67B's budget: said too (it was silent)
    assert len(huge) == 1 and "far above the largest run the paper checked the laws on (its 67B on 2e12 tokens, 9.946e23 FLOPs)" in huge[0]
    assert plan_compute(1.9e24).warnings() == []
    result = CliRunner().invoke(app, ["plan", "--compute", "1e10", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["warnings"] == tiny
