"""zo.perturb=example: one perturbation per example, applied through the layer that owns the
bias."""

import pytest
import torch

from beft.config import load_config
from beft.train import Trainer
from beft.train.batches import to_device
from beft.zo.estimator import ZOOptimizer, perturbation
from train_helpers import (
    BATCH,
    DATA_DIR,
    ZO_FACTOR,
    adapter,
    assert_runs_agree,
    base_args,
    launch,
    result,
)

ZO = {"optim.kind": "zo", "zo.update": "adam", "lr": "1e-2", "zo.perturb": "example"}


def test_step_examples_is_the_mean_of_per_example_projections():
    """Per-example quadratics L_e(x) = 0.5 x'A_e x - b_e'x: with SGD the update is exactly
    -lr * mean_e (grad_e . z_e) z_e (central differences are exact for a quadratic)."""
    torch.manual_seed(0)
    p = [torch.randn(3), torch.randn(2)]
    B = 4
    mats = [(lambda M: M @ M.T + torch.eye(5))(torch.randn(5, 5)) for _ in range(B)]
    vecs = [torch.randn(5) for _ in range(B)]
    x0 = torch.cat([q.flatten() for q in p]).double()
    seen = []

    def losses(offsets):
        seen.append([q.clone() for q in p])
        out = []
        for e in range(B):
            x = x0 + torch.cat([o[e].flatten() for o in offsets]).double()
            out.append(0.5 * x @ mats[e].double() @ x - vecs[e].double() @ x)
        return torch.stack(out)

    opt = ZOOptimizer(p, lr=0.1, eps=1e-3, n=2, seed=5, update="sgd")
    out = opt.step_examples(losses, step=3, examples=list(range(B)), total=B)
    expected = torch.zeros(5, dtype=torch.float64)
    for e in range(B):
        g = mats[e].double() @ x0 - vecs[e].double()
        for i in range(2):
            z = torch.cat(
                [t.flatten() for t in perturbation([q.shape for q in p], opt.z_seed(3, e * 2 + i))]
            ).double()
            expected += (g @ z) * z / (B * 2)
    got = (x0 - torch.cat([q.flatten() for q in p]).double()) / 0.1
    assert torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * expected.abs().max())
    assert all(
        torch.equal(a, b) for s in seen for a, b in zip(s, [x0[:3].float(), x0[3:].float()])
    )  # never edited
    assert out["loss"] == pytest.approx(
        float(sum(0.5 * x0 @ m.double() @ x0 - v.double() @ x0 for m, v in zip(mats, vecs)) / B),
        rel=1e-3,
    )


def test_step_examples_forward_differences():
    """difference=forward: one unperturbed pass (losses_fn(None)) then one per draw; with SGD the
    update is -lr * mean_e ((L_e(x + eps z_e) - L_e(x)) / eps) z_e, i.e. (grad_e.z_e + eps/2 z_e'A_e
    z_e) z_e.
    """
    torch.manual_seed(0)
    B, eps, lr = 3, 1e-2, 0.1
    p = [torch.randn(4)]
    mats = [(lambda M: M @ M.T + torch.eye(4))(torch.randn(4, 4)).double() for _ in range(B)]
    x0 = p[0].double().clone()
    calls = []

    def losses(offsets):
        calls.append(offsets)
        x = [x0 + (0 if offsets is None else offsets[0][e].double()) for e in range(B)]
        return torch.stack([0.5 * x[e] @ mats[e] @ x[e] for e in range(B)])

    opt = ZOOptimizer(p, lr=lr, eps=eps, n=2, seed=5, update="sgd", difference="forward")
    out = opt.step_examples(losses, step=1, examples=list(range(B)), total=B)
    assert len(calls) == 3 and calls[0] is None and all(c is not None for c in calls[1:])
    expected = torch.zeros(4, dtype=torch.float64)
    for e in range(B):
        for i in range(2):
            z = perturbation([(4,)], opt.z_seed(1, e * 2 + i))[0].double()
            expected += ((mats[e] @ x0) @ z + eps / 2 * z @ mats[e] @ z) * z / (B * 2)
    assert torch.allclose(
        (x0 - p[0].double()) / lr, expected, rtol=1e-3, atol=1e-4 * expected.abs().max()
    )
    assert out["loss"] == pytest.approx(float(sum(0.5 * x0 @ m @ x0 for m in mats) / B), rel=1e-6)


def test_zero_lr_leaves_parameters_bit_identical():
    p = [torch.randn(6)]
    before = p[0].clone()
    opt = ZOOptimizer(p, lr=0.0, eps=0.1, n=1, seed=1, update="adam")
    opt.step_examples(lambda offs: (offs[0] ** 2).sum(-1), step=0, examples=[0, 1, 2], total=3)
    assert torch.equal(p[0], before)


def _trainer(model, out, task, **kw):
    args = base_args(model, out, task=task, **{**ZO, **kw}) + [f"data_dir={DATA_DIR}"]
    t = Trainer(load_config(None, args))
    t.setup()
    return t


@pytest.mark.parametrize(
    "arch,task,kw",
    [
        ("bert", "sst2", {}),
        ("llama", "sst2", {}),
        ("llama", "copa", {}),
        ("llama", "sst2", {"method": "lora"}),
    ],
)
def test_offsets_equal_per_example_biases(arch, task, kw, tiny_dirs, need_data, tmp_path):
    """Example j's losses under offsets == its loss alone with the trained tensors set to theta +
    offset_j
    (a batch of pairs without a shared prompt (COPA) maps rows to examples; a reparametrised bias
    (method=lora) shifts the layer by delta(p + offset) - delta(p))."""
    t = _trainer(tiny_dirs[arch], tmp_path / "o", task, **kw)
    model = t.backend.model
    model.eval()
    examples = t.splits.train[:4]
    batch = t.task.collate(t.tokenizer, examples, t.cfg.data.max_length)
    assert task != "copa" or batch["input_ids"].shape[0] > len(
        examples
    )  # one row per (example, candidate)
    params = [t.params[n] for n in t.step.biases]
    g = torch.Generator().manual_seed(0)
    offsets = [torch.randn((len(examples), *p.shape), generator=g) * 0.5 for p in params]
    with torch.no_grad():
        got = t.step.example_losses_fn(model, batch)(offsets)
        for j, ex in enumerate(examples):
            saved = [p.detach().clone() for p in params]
            for p, o in zip(params, offsets):
                p.add_(o[j])
            alone = t.task.example_losses(
                model, t.task.collate(t.tokenizer, [ex], t.cfg.data.max_length)
            )
            for p, s in zip(params, saved):
                p.copy_(s)
            assert got[j].item() == pytest.approx(alone.item(), abs=1e-4)
        plain = t.task.example_losses(model, batch)
        assert not torch.allclose(got, plain)  # the offsets did something
        assert torch.allclose(
            plain.mean(), t.task.loss(model, batch), atol=1e-5
        )  # the mean is the loss


def test_loop_trains_biases_and_reparam(tiny_dirs, need_data, tmp_path):
    p = launch(base_args(tiny_dirs["bert"], tmp_path / "b", **ZO))
    assert p.returncode == 0, p.stderr[-3000:]
    a = adapter(tmp_path / "b")
    assert (
        a["bert.encoder.layer.0.attention.self.value.bias"].abs().max() > 0
        and "classifier.weight" in a
    )
    p = launch(
        base_args(
            tiny_dirs["llama"], tmp_path / "l", method="lora", **{**ZO, "zo.perturb": "batch"}
        )
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert all(
        t.abs().max() > 0 for t in adapter(tmp_path / "l").values()
    )  # b0 = 0 + a trained delta


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.parametrize(
    "launcher,difference",
    [("fsdp", "central"), ("deepspeed:zero3", "central"), ("fsdp", "forward")],
)
def test_two_ranks_equal_one(launcher, difference, tiny_dirs, need_data, tmp_path):
    """Each example draws its z from its index in the global batch, so 2 ranks (4 examples each)
    end with a 1-process run's biases (central and forward differences)."""
    kw = {**ZO, "zo.difference": difference}
    assert launch(base_args(tiny_dirs["llama"], tmp_path / "one", **kw)).returncode == 0
    p = launch(base_args(tiny_dirs["llama"], tmp_path / "two", **kw), launcher=launcher)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert result(tmp_path / "two")["sharding_rank0"]["frozen_local_numel"] > 0
    # (L+ - L-) / 2eps magnifies the rounding of the per-example losses by 500; (L+ - L) / eps by
    # 1000
    assert_runs_agree(
        tmp_path / "one",
        tmp_path / "two",
        reduction=BATCH,
        factor=ZO_FACTOR * (1 if difference == "central" else 2),
    )


@pytest.mark.parametrize("perturb", ["batch", "example"])
def test_fused_qkv_moves_only_the_selected_slice(perturb, need_data, tmp_path):
    """GPT-NeoX's fused query_key_value bias with bias=v: ZO perturbs and updates the v slice only
    (first-order masks the gradient; ZO drew z over all of q, k, v before, and outside one process
    nothing put q and k back)."""
    from tiny import save_tiny

    t = _trainer(
        save_tiny("gpt_neox", tmp_path / "neox"),
        tmp_path / "run",
        "sst2",
        **{"zo.perturb": perturb},
    )
    (param, frozen, _), *_ = t.selection.frozen_slices
    before = param.detach().clone()
    order = t.batches.order(0)
    batch = to_device(t.collate([t.splits.train[i] for i in order[:8]]), t.backend.device)
    t.step.run(t.backend.model, [batch], 0)  # no after_step: ZO alone must keep the slice
    moved = (param.detach() - before).abs()
    trained = torch.ones(param.numel(), dtype=torch.bool)
    trained[frozen] = False
    assert moved[frozen].max() == 0 and moved[trained].min() > 0


def test_head_in_two_modules_is_a_clear_error(tiny_dirs, need_data, tmp_path, monkeypatch):
    """A new head spread over two modules (DeBERTa-v2: pooler + classifier) cannot train on
    gathered copies: one line naming the fix, not a traceback from deep inside."""
    import beft.zo.probe
    from beft.train import TrainingError

    def two_roots(head):
        raise ValueError(
            "a first-order or probed head must be one module; the new tensors are under"
            " ['classifier', 'pooler']"
        )

    monkeypatch.setattr(beft.zo.probe, "head_root", two_roots)
    with pytest.raises(TrainingError, match="use zo.head=freeze"):
        _trainer(tiny_dirs["bert"], tmp_path / "run", "sst2")


@pytest.mark.slow
@pytest.mark.dist
def test_fused_slice_on_sharded_backends(need_data, tmp_path):
    """First-order training of part of a fused qkv bias under FSDP2 / ZeRO-3 cannot keep the rest
    frozen (FSDP2 trained q and k silently; ZeRO-3 crashed in setup): one clear error. ZO can:
    it draws over the slice alone, so ZeRO-3 ZO runs and leaves q and k as loaded."""
    import transformers as tf

    from beft.bias import apply_bias
    from tiny import save_tiny

    model = save_tiny("gpt_neox", tmp_path / "neox")
    for launcher in ("fsdp", "deepspeed:zero3"):
        p = launch(base_args(model, tmp_path / launcher.replace(":", "_")), launcher=launcher)
        # (the launcher reports a failed rank in its own way; our ranks print one line, no traceback
        # of ours)
        assert (
            p.returncode != 0 and "error: bias=v selects part of a fused qkv bias" in p.stderr
        ), p.stderr[-2000:]
        assert "beft/train/" not in p.stderr
    p = launch(
        base_args(model, tmp_path / "zo", **{**ZO, "zo.perturb": "batch"}),
        launcher="deepspeed:zero3",
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    ref = tf.AutoModelForCausalLM.from_pretrained(model)
    b0 = ref.gpt_neox.layers[0].attention.query_key_value.bias.detach().clone()
    (_, frozen, _), *_ = apply_bias(ref, "v").frozen_slices
    a = adapter(tmp_path / "zo")["gpt_neox.layers.0.attention.query_key_value.bias"]
    assert torch.equal(a[frozen], b0[frozen]) and not torch.equal(a, b0)
