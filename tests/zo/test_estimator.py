import torch

from beft.zo.estimator import ZOOptimizer, perturbation


def _quadratic(params, A, b):
    x = torch.cat([p.flatten() for p in params])
    return float(0.5 * x @ A @ x - b @ x)


def test_projected_gradient_is_the_directional_derivative():
    torch.manual_seed(0)
    p = [torch.randn(3), torch.randn(2)]
    M = torch.randn(5, 5)
    A, b = M @ M.T + torch.eye(5), torch.randn(5)
    opt = ZOOptimizer(p, lr=0.0, eps=1e-3, n=1, seed=7)
    out = opt.step(lambda: _quadratic(p, A, b), step=4)
    x = torch.cat([q.flatten() for q in p]).double()
    grad = A.double() @ x - b.double()
    z = torch.cat(
        [t.flatten() for t in perturbation([q.shape for q in p], opt.z_seed(4, 0))]
    ).double()
    # central differences are exact for a quadratic, up to float32 rounding of the losses
    assert abs(out["projected_grad"] - float(grad @ z)) < 1e-2 * max(1.0, abs(float(grad @ z)))


def test_zero_update_restores_bit_identically():
    torch.manual_seed(1)
    p = [torch.randn(7), torch.randn(4, 3)]
    before = [q.clone() for q in p]
    opt = ZOOptimizer(p, lr=0.0, eps=0.1, n=3, seed=1)
    opt.step(lambda: float(sum((q**3).sum() for q in p)), step=0)
    assert all(torch.equal(a, b) for a, b in zip(p, before))


def test_same_seed_same_run_and_descends():
    def run(seed):
        p = [torch.ones(4) * 2.0]
        opt = ZOOptimizer(p, lr=0.05, eps=1e-3, n=2, seed=seed, update="adam")
        losses = [opt.step(lambda: float((p[0] ** 2).sum()), step=s)["loss"] for s in range(60)]
        return p[0].clone(), losses

    a, la = run(3)
    b, lb = run(3)
    assert torch.equal(a, b) and la == lb
    assert lb[-1] < 0.5 * lb[0]
    c, _ = run(4)
    assert not torch.equal(a, c)


def test_forward_differences_share_one_unperturbed_pass():
    """difference=forward: L(theta) is measured once per step and shared by the n draws (n + 1
    passes, not 2n); each projection is (L(theta + eps z) - L(theta)) / eps, which for a quadratic
    is exactly grad.z + eps/2 z'Az; the parameters come back bit-identical at lr 0."""
    torch.manual_seed(0)
    p = [torch.randn(3), torch.randn(2)]
    before = [q.clone() for q in p]
    M = torch.randn(5, 5)
    A, b = M @ M.T + torch.eye(5), torch.randn(5)
    calls = []

    def loss():
        calls.append(torch.cat([q.flatten() for q in p]).clone())
        return _quadratic(p, A, b)

    opt = ZOOptimizer(p, lr=0.0, eps=1e-2, n=3, seed=7, difference="forward")
    out = opt.step(loss, step=4)
    x = torch.cat([q.flatten() for q in before]).double()
    assert len(calls) == 4 and torch.equal(calls[0], x.float())  # the unperturbed pass comes first
    grad = A.double() @ x - b.double()
    zs = [
        torch.cat(
            [t.flatten() for t in perturbation([q.shape for q in p], opt.z_seed(4, i))]
        ).double()
        for i in range(3)
    ]
    expected = sum(float(grad @ z + 0.005 * z @ A.double() @ z) for z in zs) / 3
    assert abs(out["projected_grad"] - expected) < 1e-2 * max(1.0, abs(expected))
    assert out["loss"] == _quadratic(before, A, b)
    assert all(torch.equal(a, c) for a, c in zip(p, before))
    central = ZOOptimizer([q.clone() for q in before], lr=0.0, eps=1e-2, n=3, seed=7)
    assert (
        abs(
            central.step(lambda: _quadratic(central.params, A, b), step=4)["projected_grad"]
            - expected
        )
        > 1e-3
    )


def test_unknown_difference_is_refused():
    import pytest

    with pytest.raises(ValueError, match="central or forward"):
        ZOOptimizer([torch.zeros(2)], lr=0.1, difference="backward")


def test_draw_seeds_never_repeat():
    """Draw i of a step: unique within a run even for batch x zo.n > 1,009 draws a step, and never
    shared between seeds; the runs that could not collide keep their old seeds (same results)."""
    opt = ZOOptimizer([torch.zeros(2)], lr=0.1, seed=1)
    seeds = [opt.z_seed(s, i) for s in range(3) for i in range(2048)]
    assert len(set(seeds)) == len(seeds)
    assert opt.z_seed(7, 15) == 1 * 1_000_003 + 7 * 1_009 + 15
    other = ZOOptimizer([torch.zeros(2)], lr=0.1, seed=0)
    assert not {other.z_seed(s, i) for s in range(985, 1000) for i in range(100)} & {
        opt.z_seed(0, i) for i in range(100)
    }


def test_index_basis_moves_only_those_entries():
    """A 1-D index basis (the selected slice of a fused bias): z and the update touch those entries
    alone."""
    p = [torch.randn(9)]
    start = p[0].clone()
    idx = torch.tensor([6, 7, 8])
    opt = ZOOptimizer(p, lr=0.1, eps=1e-3, seed=0, update="adam", bases=[idx], weight_decay=0.1)
    assert torch.count_nonzero(opt.draw([p[0].shape], 3)[0][:6]) == 0
    for s in range(3):
        opt.step(lambda: float(((p[0] - 1) ** 2).sum()), step=s)
    assert torch.equal(p[0][:6], start[:6]) and (p[0][6:] - start[6:]).abs().min() > 0


def test_adam_state_follows_the_parameters_device():
    """Resumed Adam moments come back on the CPU (map_location="cpu"); the step moves them beside
    the estimate (meta stands in for a GPU)."""
    p = [torch.zeros(4, device="meta")]
    opt = ZOOptimizer(p, lr=0.1, seed=0, update="adam")
    opt.load_state_dict({"t": 3, "m": [torch.zeros(4)], "v": [torch.ones(4)]})
    opt.step(lambda: 0.0, step=3)
    assert opt.m[0].device.type == "meta" and opt.t == 4


def test_16bit_parameters_accumulate_updates_in_fp32():
    """bf16 biases (DeepSpeed bf16): steps smaller than half a bf16 step at |b| = 0.3 (1e-3) used
    to round away; the optimizer keeps their fp32 values, so they add up as in an fp32 run."""
    torch.manual_seed(0)
    c = torch.randn(64)

    def run(dtype):
        p = [torch.full((64,), 0.3, dtype=dtype)]
        opt = ZOOptimizer(p, lr=3e-5, eps=1e-2, n=4, seed=0, update="sgd")
        for s in range(60):
            opt.step(lambda: float((p[0].float() * c).sum()), step=s)
        return p[0].float(), opt

    ref, _ = run(torch.float32)
    low, opt = run(torch.bfloat16)
    assert opt.master is not None and opt.master[0].dtype == torch.float32
    moved_ref, moved = ref - 0.3, opt.master[0] - 0.3
    assert (
        torch.nn.functional.cosine_similarity(moved, moved_ref, dim=0) > 0.9
    )  # was 0.31: rounded away
    start = torch.tensor(0.3, dtype=torch.bfloat16).float()
    assert (low - start).abs().gt(0).float().mean() > 0.5  # the model sees the accumulated change
    assert opt.state_dict()["master"] is opt.master
