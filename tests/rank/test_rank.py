"""Ranking measures against hand-computed examples (degenerate cases included), type
classification, the per-sample Fisher, and a tiny ranking run that must pick v."""

import json
import math

import pytest
import torch

from beft import rank
from beft.bias import FAMILIES
from beft.bias.families import custom_family
from paths import DATA_DIR
from tiny import save_tiny

T = torch.tensor


@pytest.mark.parametrize(
    "b0,bft,expected",
    [
        ([3.0, 4.0], [6.0, 8.0], 0.5),  # same direction, twice as long: 1 - 1 * 5/10
        ([3.0, 4.0], [3.0, 4.0], 0.0),  # unchanged
        ([1.0, 0.0], [0.0, 2.0], 1.0),  # 90 degrees: cos 0
        (
            [1.0, 0.0],
            [-2.0, 0.0],
            1.5,
        ),  # beyond 90 degrees (reversed): 1 - (-1) * 1/2, kept above 1
        ([1.0, 1.0], [1.0, 0.0], 1 - math.cos(math.pi / 4) * 1 / math.sqrt(2)),
        ([0.0, 0.0], [0.5, 0.0], 1.0),  # |b0| = 0 (added zero bias): ratio 0 -> 1
        ([0.0, 0.0], [0.0, 0.0], 0.0),  # an added bias that never moved
        ([2.0, 0.0], [0.0, 0.0], 1.0),  # trained to zero
    ],
)
def test_projection(b0, bft, expected):
    assert rank.projection(T(b0), T(bft)) == pytest.approx(expected, abs=1e-12)


def test_magnitude_and_fisher():
    assert rank.magnitude(T([1.0, 2.0]), T([2.0, 0.0])) == pytest.approx(1.5)
    assert rank.magnitude(T([0.0, 0.0]), T([0.0, 0.0])) == 0.0
    assert rank.fisher(T([1.0, 3.0])) == pytest.approx(2.0)


def bert_state(values: dict[str, float], layers=2):
    mods = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "o": "attention.output.dense",
        "ln": "attention.output.LayerNorm",
        "mlp": "intermediate.dense",
    }
    return {
        f"bert.encoder.layer.{i}.{mods[t]}.bias": torch.full((4,), v * (i + 1))
        for t, v in values.items()
        for i in range(layers)
    } | {"bert.embeddings.LayerNorm.bias": torch.ones(4), "classifier.bias": torch.ones(2)}


def test_types_and_aggregation_by_hand():
    b0 = bert_state({"q": 1, "k": 1, "v": 1, "o": 1, "ln": 1, "mlp": 1})
    bft = {
        n: t + (0.3 if ".value." in n else 0.1 if ".query." in n else 0.0) for n, t in b0.items()
    }
    views = rank.bias_views(b0, FAMILIES["bert"])
    assert set(t for t, _ in views) == {
        "q",
        "k",
        "v",
        "o",
        "attention.output.LayerNorm",
        "intermediate.dense",
    }
    assert len(views) == 12  # embeddings / classifier are not ranked
    out = rank.rank_state(b0, bft, None, FAMILIES["bert"])
    mag = out["magnitude"]["per_type"]
    assert mag["v"]["layers"] == pytest.approx([0.3, 0.3]) and mag["v"]["sum"] == pytest.approx(0.6)
    assert mag["q"]["mean"] == pytest.approx(0.1) and mag["k"]["mean"] == 0.0
    assert out["magnitude"]["order"][:2] == ["v", "q"] and out["magnitude"]["top_qkv"] == "v"
    # projection, layer 0 of v: b0 = 1 (x4), bft = 1.3 (x4): same direction, 1 - 1/1.3
    assert out["projection"]["per_type"]["v"]["layers"][0] == pytest.approx(1 - 1 / 1.3)
    assert out["projection"]["top_qkv"] == "v" and "fisher" not in out
    assert "v" in rank.format_table(out)


def test_fused_qkv_is_split_and_custom_patterns():
    from tiny import tiny_config

    cfg = tiny_config("gpt_neox")  # 4 heads x 16: [q k v] interleaved per head
    b = torch.arange(192.0)
    views = rank.bias_views(
        {"gpt_neox.layers.0.attention.query_key_value.bias": b}, FAMILIES["gpt_neox"], cfg
    )
    assert set(views) == {("q", 0), ("k", 0), ("v", 0)}
    assert views[("v", 0)][:3].tolist() == [32.0, 33.0, 34.0]
    fam = custom_family({"v": r".*\.attn\.vv"})
    views = rank.bias_views(
        {"m.layers.3.attn.vv.bias": torch.ones(2), "m.layers.3.mlp.fc.bias": torch.ones(2)}, fam
    )
    assert set(views) == {("v", 3), ("mlp.fc", 3)}


class _Toy:
    """loss(x) = (w . x + b - y)^2 on a linear model: per-example gradient 2 r (x, 1)."""

    def collate(self, tok, exs, max_length):
        return {"x": torch.tensor([e["x"] for e in exs]), "y": torch.tensor([e["y"] for e in exs])}

    def loss(self, model, batch):
        return ((model(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()


def test_empirical_fisher_is_per_sample():
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(T([[1.0, 0.0]]))
        lin.bias.fill_(0.0)
    exs = [{"x": [1.0, 0.0], "y": 0.0}, {"x": [0.0, 1.0], "y": 1.0}]  # residuals 1 and -1
    g2 = rank.empirical_fisher(lin, _Toy(), None, exs, {"b": lin.bias}, 8)
    assert g2["b"].item() == pytest.approx(
        4.0
    )  # mean of (2*1)^2 and (2*-1)^2; the batch gradient is 0


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A saved tiny BERT with random (non-zero) biases, so that b_0 has a direction."""
    import transformers as tf

    d = save_tiny("bert", tmp_path_factory.mktemp("rank") / "bert")
    model = tf.AutoModel.from_pretrained(d)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(".bias"):
                p.normal_(0, 0.1)
    model.save_pretrained(d)
    return d


def fake_bitfit_run(model_dir, out):
    """A finished 'all-bias run' whose adapter moved b_v most (no training needed)."""
    from beft.bias import apply_bias
    from beft.bias.adapter import save_adapter
    from beft.config import dump_config, load_config
    from beft.models import load_model

    cfg = load_config(
        None,
        {
            "model": str(model_dir),
            "task": "sst2",
            "method": "bitfit",
            "data.n_train": "16",
            "data.n_eval": "8",
            "data.max_length": "32",
            "output_dir": str(out),
            "data_dir": str(DATA_DIR),
            "threads": "1",
        },
    )
    torch.manual_seed(cfg.seed)
    model, _, head = load_model(str(model_dir), "encoder", num_labels=2)
    sel = apply_bias(model, "all", head=head)
    with torch.no_grad():
        for n, p in sel.bias_parameters().items():
            p.add_(0.5 if ".value." in n else 0.01)
    out.mkdir(parents=True)
    save_adapter(out / "adapter", sel, model)
    (out / "config.yaml").write_text(dump_config(cfg))
    return cfg


def test_tiny_ranking_run_picks_v(tiny_bert, need_data, tmp_path):
    run = tmp_path / "run"
    fake_bitfit_run(tiny_bert, run)
    res = rank.rank_run(run, verbose=False)
    assert res["selected"] == "v" and res["measure"] == "projection"
    assert res["measures"]["magnitude"]["top_qkv"] == "v"
    assert res["measures"]["magnitude"]["per_type"]["v"]["mean"] == pytest.approx(0.5, abs=1e-6)
    assert res["fisher"] == {"examples": 16, "kind": "per-sample"}
    assert set(res["measures"]) == {"magnitude", "fisher", "projection"}
    for f in ("ranking.json", "ranking.txt", "ranking.png"):
        assert (run / f).is_file()
    assert rank.auto_target(run) == "v"
    assert json.loads((run / "ranking.json").read_text())["selected"] == "v"


def test_auto_target_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ranking.json"):
        rank.auto_target(tmp_path)
    (tmp_path / "ranking.json").write_text(json.dumps({"selected": "o"}))
    with pytest.raises(ValueError, match="not one of q, k, v"):
        rank.auto_target(tmp_path)


def test_rank_cli_then_bias_auto(tiny_dirs, need_data, tmp_path):
    """launch/rank.py: bitfit fine-tune + ranking through the normal loop; then bias=auto trains its
    pick."""
    from inprocess import run_script
    from train_helpers import ROOT, base_args, launch, result

    def rank(*argv):  # launch/rank.py ARGS, in this process
        return run_script(ROOT / "launch" / "rank.py", argv, env=env, cwd=ROOT)

    out = tmp_path / "rank"
    args = base_args(tiny_dirs["bert"], out, epochs=1, **{"data.n_train": 32, "data.n_eval": 16})
    env = {"BEFT_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = rank(*args)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (
        "top of q/k/v" in p.stdout
        and (out / "ranking.png").is_file()
        and (out / "result.json").is_file()
    )
    picked = json.loads((out / "ranking.json").read_text())["selected"]
    assert result(out)["method"] == "bitfit"
    p = rank(f"from_run={out}", f"output_dir={tmp_path / 'again'}", "rank.measure=magnitude")
    assert p.returncode == 0, p.stderr[-3000:]
    again = json.loads((tmp_path / "again" / "ranking.json").read_text())
    assert (
        again["measure"] == "magnitude"
        and again["selected"] == again["measures"]["magnitude"]["top_qkv"]
    )
    fig = tmp_path / "fig.png"
    p = rank("--figure", fig, out, tmp_path / "again")
    assert p.returncode == 0 and fig.is_file()
    run2 = tmp_path / "auto"
    p = launch(base_args(tiny_dirs["bert"], run2, bias="auto", rank_from=out, epochs=1))
    assert p.returncode == 0, p.stderr[-3000:]
    assert result(run2)["bias"] == picked
    # ranking a one-target run would only "rank" that target; a bare --recipe must not start a
    # default run
    for bad, says in (
        ([f"from_run={run2}"], "all-bias fine-tune"),
        (["--recipe"], "--recipe needs a file"),
    ):
        p = rank(*bad)
        assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr, p.stderr[
            -2000:
        ]


def test_config_keys():
    from beft.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="bias=auto needs rank_from"):
        load_config(None, ["bias=auto"])
    with pytest.raises(ConfigError, match="reparam.shape"):
        load_config(None, ["reparam.shape=16by24"])
    with pytest.raises(ConfigError, match="rank.measure"):
        load_config(None, ["rank.measure=size"])
    cfg = load_config(
        None, ["bias=auto", "rank_from=x", "reparam.rank=2", "icl.k=8", "peft.lora_r=4"]
    )
    assert (cfg.bias, cfg.reparam.rank, cfg.icl.k, cfg.peft.lora_r) == ("auto", 2, 8, 4)
