"""optim.kind=zo through the real training loop and launchers."""

import json

import pytest

from beft.config import ConfigError, load_config
from train_helpers import (
    BATCH,
    FAULT_ENTRY,
    TOKENS,
    ZO_FACTOR,
    adapter,
    assert_agree,
    assert_runs_agree,
    base_args,
    launch,
    max_diff,
    result,
    shm_buffers,
)

ZO = {"optim.kind": "zo", "zo.update": "adam", "lr": "1e-2"}


def test_zo_decoder_trains_only_biases_and_is_deterministic(tiny_dirs, need_data, tmp_path):
    for name in ("a", "b"):
        p = launch(base_args(tiny_dirs["llama"], tmp_path / name, **ZO))
        assert p.returncode == 0, p.stderr[-3000:]
    a, b = adapter(tmp_path / "a"), adapter(tmp_path / "b")
    assert max_diff(a, b) == 0.0  # same seed, same z, same run
    assert set(a) == {f"model.layers.{i}.self_attn.v_proj.bias" for i in range(2)}
    assert all(t.abs().max() > 0 for t in a.values())  # the added zero biases moved
    logs = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["grad_norm"] > 0 for r in logs if "grad_norm" in r)


def test_zo_encoder_head_first_order(tiny_dirs, need_data, tmp_path):
    p = launch(base_args(tiny_dirs["bert"], tmp_path / "e", **ZO))
    assert p.returncode == 0, p.stderr[-3000:]
    a = adapter(tmp_path / "e")
    assert (
        "classifier.weight" in a
        and a["bert.encoder.layer.0.attention.self.value.bias"].abs().max() > 0
    )


def test_zo_kill_and_resume_bitwise(tiny_dirs, need_data, tmp_path):
    args = lambda out: base_args(
        tiny_dirs["llama"], out, **ZO, **{"checkpoint.every_steps": 3, "resume": "true"}
    )
    assert launch(args(tmp_path / "a")).returncode == 0
    assert (
        launch(args(tmp_path / "b"), env={"BEFT_KILL_AT": "step:11"}, script=FAULT_ENTRY).returncode
        != 0
    )
    p = launch(args(tmp_path / "b"))
    assert p.returncode == 0 and "resumed from step 9" in p.stdout
    assert max_diff(adapter(tmp_path / "a"), adapter(tmp_path / "b")) == 0.0


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.parametrize("launcher", ["fsdp", "deepspeed:zero3"])
def test_zo_two_ranks_draw_the_same_z(launcher, tiny_dirs, need_data, tmp_path):
    """FSDP2 and DeepSpeed ZeRO-3 (no DeepSpeed optimizer: ZeRO-Inference partitioning): every rank
    perturbs and updates its shards with the same z; the biases equal a 1-process run's."""
    assert launch(base_args(tiny_dirs["llama"], tmp_path / "one", **ZO)).returncode == 0
    p = launch(base_args(tiny_dirs["llama"], tmp_path / "two", **ZO), launcher=launcher)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    shards = result(tmp_path / "two")["sharding_rank0"]
    assert shards["frozen_local_numel"] <= 0.55 * shards["frozen_full_numel"]  # really sharded
    # (L+ - L-) / 2eps magnifies the rounding of a 2-rank mean loss by 1/(2 eps) = 500
    assert_runs_agree(tmp_path / "one", tmp_path / "two", reduction=BATCH, factor=ZO_FACTOR)


@pytest.mark.slow
@pytest.mark.dist
def test_zo_zero3_kill_and_resume(tiny_dirs, need_data, tmp_path):
    """ZO under ZeRO-3 checkpoints the gathered biases + ZO state itself; SIGKILL + resume =
    uninterrupted."""
    args = lambda out: base_args(
        tiny_dirs["llama"], out, **ZO, **{"checkpoint.every_steps": 3, "resume": "true"}
    )
    assert launch(args(tmp_path / "a"), launcher="deepspeed:zero3").returncode == 0
    shm = shm_buffers()
    p = launch(
        args(tmp_path / "b"),
        launcher="deepspeed:zero3",
        env={"BEFT_KILL_AT": "step:11"},
        script=FAULT_ENTRY,
    )
    assert p.returncode != 0 and not (tmp_path / "b" / "result.json").exists()
    # the killed ranks ran no exit handler, yet left no 66 MB CPU all-reduce buffer in /dev/shm
    assert not shm_buffers(p.port) - shm
    p = launch(args(tmp_path / "b"), launcher="deepspeed:zero3")
    assert p.returncode == 0 and "resumed from step 9" in p.stdout, (p.stdout + p.stderr)[-3000:]
    assert_runs_agree(tmp_path / "a", tmp_path / "b", reduction=BATCH, factor=ZO_FACTOR)


def test_activation_checkpointing_same_result(tiny_dirs, need_data, tmp_path):
    assert launch(base_args(tiny_dirs["llama"], tmp_path / "a")).returncode == 0
    p = launch(base_args(tiny_dirs["llama"], tmp_path / "b", activation_checkpointing="true"))
    assert p.returncode == 0, p.stderr[-3000:]
    assert_runs_agree(
        tmp_path / "a", tmp_path / "b"
    )  # recomputed activations: other kernels' order


@pytest.mark.parametrize(
    "key,error",
    [
        ("method=full", "method=bias . bitfit . lora"),
        ("zo.head_lr=-1", "zo.head_lr=-1.0 must be >= 0"),
        ("zo.perturb=x", "zo.perturb='x' is not one of"),
        ("activation_checkpointing=true", "activation_checkpointing=true is for first-order"),
        ("zo.difference=x", "zo.difference='x' is not one of"),
        ("zo.update=x", "zo.update='x' is not one of"),
    ],
)
def test_zo_config_errors(key, error):
    with pytest.raises(ConfigError, match=error):
        load_config(None, ["optim.kind=zo", key])


def test_zo_probe_fits_head_before_zo(tiny_dirs, need_data, tmp_path):
    """zo.probe=true: the head is fitted on cached features (loss falls) before step 1, logged at
    step 0
    and reported in result.json; the biases then train by ZO."""
    p = launch(
        base_args(
            tiny_dirs["bert"], tmp_path / "p", **ZO, **{"zo.probe": "true", "zo.probe_steps": 50}
        )
    )
    assert p.returncode == 0, p.stderr[-3000:]
    recs = [json.loads(x) for x in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    assert "probe" in recs[0] and recs[0]["step"] == 0 and all("probe" not in r for r in recs[1:])
    res = json.loads((tmp_path / "p" / "result.json").read_text())
    pr = res["probe"]
    assert pr["examples"] == 64 and pr["steps"] == 50 and pr["loss_after"] < pr["loss_before"]
    assert adapter(tmp_path / "p")["bert.encoder.layer.0.attention.self.value.bias"].abs().max() > 0
    bad = launch(base_args(tiny_dirs["llama"], tmp_path / "d", **ZO, **{"zo.probe": "true"}))
    assert bad.returncode == 2 and "zo.probe=true" in bad.stderr and "Traceback" not in bad.stderr


def test_zo_head_lr_drives_the_head_and_probe(tiny_dirs, need_data, tmp_path):
    """zo.head_lr=0 means the run's lr (same run bit for bit); another value changes the head."""
    kw = {**ZO, "zo.probe": "true", "zo.probe_steps": 20}
    runs = {"default": {}, "same": {"zo.head_lr": ZO["lr"]}, "other": {"zo.head_lr": "1e-1"}}
    for name, extra in runs.items():
        assert launch(base_args(tiny_dirs["bert"], tmp_path / name, **kw, **extra)).returncode == 0
    a, b, c = (adapter(tmp_path / n) for n in runs)
    assert max_diff(a, b) == 0.0
    assert (a["classifier.weight"] - c["classifier.weight"]).abs().max() > 1e-3
    assert (
        result(tmp_path / "other")["probe"]["loss_after"]
        != result(tmp_path / "default")["probe"]["loss_after"]
    )


def test_gathered_head_fits_cached_features():
    """The probe's fit: full-batch AdamW on cached inputs, written back into the module."""
    import types

    import torch

    from beft.config import TrainConfig
    from beft.zo.estimator import direct
    from beft.zo.head import GatheredHead
    from beft.zo.probe import head_module

    torch.manual_seed(0)
    x = torch.randn(200, 8)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()  # linearly separable
    model = torch.nn.Module()
    model.classifier = torch.nn.Linear(8, 2)
    backend = types.SimpleNamespace(
        full_state=lambda d: {k: v.detach().clone() for k, v in d.items()},
        full_access=direct,
        device=torch.device("cpu"),
    )
    params = dict(model.named_parameters())
    init = {k: v.detach().clone() for k, v in params.items()}

    def fit(chunks):
        model.load_state_dict(init)
        head = GatheredHead(
            head_module(model, list(params)),
            "classifier",
            params,
            backend,
            TrainConfig(),
            1e-2,
            lambda step: 1.0,
        )
        return head, head.fit(
            list(x.split(chunks)),
            list(y.split(chunks)),
            torch.nn.functional.cross_entropy,
            steps=200,
            lr=5e-2,
            total=200,
        )

    _, whole = fit(200)
    head, r = fit([30, 90, 80])  # cached per batch (uneven batches): the same full-batch fit
    assert r["loss_after"] == pytest.approx(whole["loss_after"], abs=1e-5)
    assert r["loss_after"] < 0.3 < r["loss_before"]
    assert (
        model.classifier(x).argmax(-1) == y
    ).float().mean() > 0.95  # written back into the module
    before = model.classifier.weight.detach().clone()
    head.step(x[:16], y[:16], torch.nn.functional.cross_entropy)
    assert not torch.equal(before, model.classifier.weight)
    with pytest.raises(ValueError, match="one module"):
        head_module(model, ["classifier.weight", "score.weight"])
    # the copies live on the run's device, beside the features (meta stands in for a GPU here)
    meta = types.SimpleNamespace(**{**vars(backend), "device": torch.device("meta")})
    on_meta = GatheredHead(
        head_module(model, list(params)),
        "classifier",
        params,
        meta,
        TrainConfig(),
        1e-2,
        lambda step: 1.0,
    )
    assert {c.device.type for c in on_meta.copies} == {"meta"}
    assert on_meta(torch.empty(4, 8, device="meta")).shape == (4, 2)


def test_probe_on_a_sequence_head(need_data, tmp_path):
    """RoBERTa's head takes the whole sequence (B, T, H) and every probe batch is padded to its own
    length: the probe keeps them per batch (a torch.cat over batches of different T crashed)."""
    from tiny import save_tiny

    model = save_tiny("roberta", tmp_path / "roberta")
    p = launch(
        base_args(
            model,
            tmp_path / "r",
            **ZO,
            **{"zo.probe": "true", "zo.probe_steps": 20, "data.eval_batch_size": 8},
        )
    )
    assert p.returncode == 0, p.stderr[-3000:]
    pr = result(tmp_path / "r")["probe"]
    assert pr["examples"] == 64 and pr["loss_after"] < pr["loss_before"]


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.parametrize("launcher", ["fsdp", "deepspeed:zero3"])
def test_encoder_head_first_order_and_probe_on_two_ranks(launcher, tiny_dirs, need_data, tmp_path):
    """A new encoder head, probed and then trained first-order beside ZO biases, on 2 sharded ranks
    ends where one process does (the head on gathered copies, its gradient averaged over ranks)."""
    kw = {**ZO, "zo.probe": "true", "zo.probe_steps": 20, "zo.perturb": "example", "max_steps": 4}
    assert launch(base_args(tiny_dirs["bert"], tmp_path / "one", **kw)).returncode == 0
    p = launch(base_args(tiny_dirs["bert"], tmp_path / "two", **kw), launcher=launcher)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert result(tmp_path / "two")["sharding_rank0"]["frozen_local_numel"] > 0
    one, two = adapter(tmp_path / "one"), adapter(tmp_path / "two")
    head = [k for k in one if k.startswith("classifier.")]
    p1, p2 = result(tmp_path / "one")["probe"], result(tmp_path / "two")["probe"]
    assert head and p2["examples"] == 64 and p2["steps"] == 20
    # the head: first order, 20 full-batch probe steps on cached features, then 4 steps beside ZO
    assert_agree(
        {k: one[k] for k in head},
        {k: two[k] for k in head},
        steps=20 + 4,
        reduction=TOKENS,
        lr=1e-2,
        what="the head",
    )
    assert_agree(
        p1["loss_after"], p2["loss_after"], steps=20, reduction=TOKENS, lr=1e-2, what="probe loss"
    )
    # the biases: ZO's (L+ - L-) / 2eps magnifies the rounding of the per-example losses (each rank
    # pads its own 4 examples) by 500, and each loss also goes through the head, which differs
    # between
    # the runs as well (above): a difference d of its weights moves a logit by sum_j x_j d over the
    # H = 64 pooled features, ~ sqrt(H) d = 8 d for features of either sign (measured: 2.9e-4 after
    # 4
    # steps, against 6e-6 after 16 for ZO alone in test_perturb_example.py)
    assert_runs_agree(
        tmp_path / "one",
        tmp_path / "two",
        reduction=BATCH,
        factor=ZO_FACTOR * 8,
        keys=[k for k in one if k not in head],
        what="ZO biases",
    )
