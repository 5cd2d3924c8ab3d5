"""pinclip.losses: masking, logQ, Matryoshka, λ=0 = CLIP, and that the objective trains."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pinclip.losses import LOSS_TERMS, LossConfig, LossInputs, contrastive_logits, pinclip_loss

SCALE = torch.tensor(math.log(10.0))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: threads only add contention on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


BIAS = torch.tensor(-5.0)


def unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def embs(b: int = 6, d: int = 16, seed: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        image_emb=unit(b, d, seed=seed),
        text_emb=unit(b, d, seed=seed + 1),
        pin_emb=unit(b, d, seed=seed + 2),
    )


def clip_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Reference CLIP loss, written independently of pinclip.losses."""
    logits = scale.exp() * a @ b.T
    labels = torch.arange(len(a))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def test_lambda_zero_is_plain_clip_without_neighbors() -> None:
    x = embs(d=32)
    dims = (8, 32)

    def ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return sum(
            clip_loss(F.normalize(a[:, :d], dim=-1), F.normalize(b[:, :d], dim=-1), SCALE)
            for d in dims
        ) / len(dims)

    cfg = LossConfig(fuse_weight=0.3, nbr_weight=0.0, matryoshka_dims=dims)
    loss, parts = pinclip_loss(LossInputs(x, None, logit_scale=SCALE), cfg)
    fuse = (ref(x.pin_emb, x.image_emb) + ref(x.pin_emb, x.text_emb)) / 2
    expected = ref(x.image_emb, x.text_emb) + 0.3 * fuse
    torch.testing.assert_close(loss, expected)
    assert "nbr" not in parts

    clip_only = LossConfig(fuse_weight=0.0, nbr_weight=0.0, matryoshka_dims=())
    loss, _ = pinclip_loss(LossInputs(x, logit_scale=SCALE), clip_only)
    torch.testing.assert_close(loss, clip_loss(x.image_emb, x.text_emb, SCALE))
    # a neighbor batch passed anyway changes nothing at λ = 0
    loss_n, _ = pinclip_loss(LossInputs(x, embs(seed=9), logit_scale=SCALE), clip_only)
    torch.testing.assert_close(loss_n, loss)


def test_logit_scale_clamped_at_log_100() -> None:
    x = embs()
    cfg = LossConfig(nbr_weight=0.0, matryoshka_dims=())
    high, _ = pinclip_loss(LossInputs(x, logit_scale=torch.tensor(9.0)), cfg)
    at_cap, parts = pinclip_loss(LossInputs(x, logit_scale=torch.tensor(math.log(100.0))), cfg)
    torch.testing.assert_close(high, at_cap)
    assert parts["logit_scale"] == pytest.approx(100.0)


def test_duplicates_are_not_negatives() -> None:
    x = embs(b=4)
    dup_ids = torch.tensor([7, 1, 7, 2])  # rows 0 and 2 are the same content
    cfg = LossConfig(fuse_weight=0.0, nbr_weight=0.0, matryoshka_dims=())
    loss, _ = pinclip_loss(LossInputs(x, logit_scale=SCALE, dup_ids=dup_ids), cfg)

    logits = SCALE.exp() * x.image_emb @ x.text_emb.T
    logits[0, 2] = logits[2, 0] = float("-inf")
    labels = torch.arange(4)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(loss, expected)
    plain, _ = pinclip_loss(LossInputs(x, logit_scale=SCALE), cfg)
    assert not torch.isclose(loss, plain)


def test_siglip_drops_duplicate_pairs() -> None:
    x = embs(b=4)
    cfg = LossConfig(kind="siglip", fuse_weight=0.0, nbr_weight=0.0, matryoshka_dims=())
    loss, _ = pinclip_loss(
        LossInputs(x, logit_scale=SCALE, logit_bias=BIAS, dup_ids=torch.tensor([3, 3, 4, 5])), cfg
    )
    logits = SCALE.exp() * x.image_emb @ x.text_emb.T + BIAS
    labels = 2 * torch.eye(4) - 1
    per_pair = -F.logsigmoid(labels * logits)
    per_pair[0, 1] = per_pair[1, 0] = 0.0
    torch.testing.assert_close(loss, per_pair.sum() / 4)


def test_masked_pairs_get_minus_inf_logits_but_positives_stay() -> None:
    q, k = unit(3, 8, seed=1), unit(3, 8, seed=2)
    exclude = torch.tensor([[False, True, False], [False, False, False], [True, False, False]])
    logits = contrastive_logits(q, k, SCALE, exclude=exclude)
    assert torch.isinf(logits[exclude]).all() and (logits[exclude] < 0).all()
    torch.testing.assert_close(logits[~exclude], (SCALE.exp() * q @ k.T)[~exclude])


@pytest.mark.parametrize("kind", ["infonce", "siglip"])
def test_co_board_pair_is_never_a_negative(kind: str) -> None:
    """Move neighbor 2 so that only its similarity to anchor 0 changes: with (0, 2) co-board
    masked, the loss must not see it; unmasked, it must."""
    b, d = 4, 16
    anchor, neighbor = embs(b=b, d=d, seed=3), embs(b=b, d=d, seed=30)
    others = torch.cat([v[1:] for v in vars(anchor).values()])  # every anchor field but row 0
    basis, _ = torch.linalg.qr(others.T)  # [d, 9] orthonormal basis of their span
    n2 = neighbor.pin_emb[2]
    kept = basis @ (basis.T @ n2)
    free = torch.randn(d, generator=torch.Generator().manual_seed(1))
    free = free - basis @ (basis.T @ free)
    free = free - (free @ (n2 - kept)) / (n2 - kept).norm() ** 2 * (n2 - kept)
    moved_pin = neighbor.pin_emb.clone()
    moved_pin[2] = kept + free / free.norm() * (n2 - kept).norm()  # still unit norm
    moved = SimpleNamespace(pin_emb=moved_pin)
    torch.testing.assert_close(others @ moved_pin[2], others @ n2)
    assert abs(anchor.pin_emb[0] @ (moved_pin[2] - n2)) > 0.05

    co_board = torch.zeros(b, b, dtype=torch.bool)
    co_board[0, 2] = True
    cfg = LossConfig(kind=kind, fuse_weight=0.0, matryoshka_dims=())
    kw = dict(logit_scale=SCALE, logit_bias=BIAS)
    masked, _ = pinclip_loss(LossInputs(anchor, neighbor, co_board=co_board, **kw), cfg)
    masked_moved, _ = pinclip_loss(LossInputs(anchor, moved, co_board=co_board, **kw), cfg)
    torch.testing.assert_close(masked_moved, masked)
    plain, _ = pinclip_loss(LossInputs(anchor, neighbor, **kw), cfg)
    plain_moved, _ = pinclip_loss(LossInputs(anchor, moved, **kw), cfg)
    assert abs(plain_moved - plain) > 1e-3  # control: unmasked, neighbor 2 is a negative of 0

    # the diagonal is the positive pair: a True there is ignored
    diag, _ = pinclip_loss(
        LossInputs(anchor, neighbor, co_board=co_board | torch.eye(b, dtype=torch.bool), **kw), cfg
    )
    torch.testing.assert_close(diag, masked)


def test_co_board_loss_matches_hand_computation() -> None:
    x, nb = embs(b=4, seed=4), embs(b=4, seed=8)
    co_board = torch.tensor(
        [[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [1, 0, 0, 0]], dtype=torch.bool
    )
    cfg = LossConfig(fuse_weight=0.0, nbr_terms=("pin_pin",), matryoshka_dims=())
    loss, parts = pinclip_loss(LossInputs(x, nb, logit_scale=SCALE, co_board=co_board), cfg)

    logits = SCALE.exp() * x.pin_emb @ nb.pin_emb.T
    logits = logits.masked_fill(co_board & ~torch.eye(4, dtype=torch.bool), float("-inf"))
    labels = torch.arange(4)
    nbr = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert parts["nbr"] == pytest.approx(nbr.item(), rel=1e-6)
    torch.testing.assert_close(loss, clip_loss(x.image_emb, x.text_emb, SCALE) + nbr)
    # numpy masks, as pinclip.graph.PinBoardGraph.co_board_mask returns them, work the same
    loss_np, _ = pinclip_loss(LossInputs(x, nb, logit_scale=SCALE, co_board=co_board.numpy()), cfg)
    torch.testing.assert_close(loss_np, loss)


def test_logq_subtracts_log_q_from_each_candidate_column() -> None:
    q, k = unit(5, 8, seed=5), unit(5, 8, seed=6)
    log_q = torch.log(torch.tensor([0.5, 0.2, 0.1, 0.1, 0.1]))
    shifted = contrastive_logits(q, k, SCALE, log_q=log_q)
    plain = contrastive_logits(q, k, SCALE)
    torch.testing.assert_close(shifted - plain, -log_q.expand(5, 5))

    # in the loss: anchor→neighbor (neighbors are the sampled candidates) is corrected,
    # neighbor→anchor (uniformly drawn anchors as candidates) is not
    x, nb = embs(b=5, seed=5), embs(b=5, seed=11)
    cfg = LossConfig(fuse_weight=0.0, nbr_terms=("pin_pin",), logq=True, matryoshka_dims=())
    _, parts = pinclip_loss(LossInputs(x, nb, logit_scale=SCALE, log_q=log_q), cfg)
    logits = SCALE.exp() * x.pin_emb @ nb.pin_emb.T
    labels = torch.arange(5)
    expected = (
        F.cross_entropy(logits - log_q[None, :], labels) + F.cross_entropy(logits.T, labels)
    ) / 2
    assert parts["nbr"] == pytest.approx(expected.item(), rel=1e-6)
    _, off = pinclip_loss(
        LossInputs(x, nb, logit_scale=SCALE), LossConfig(**{**cfg.__dict__, "logq": False})
    )
    assert off["nbr"] != pytest.approx(parts["nbr"], rel=1e-3)


def test_rows_without_neighbor_are_skipped() -> None:
    x, nb = embs(b=6, seed=2), embs(b=6, seed=7)
    has = torch.tensor([True, False, True, True, False, True])
    nb.pin_emb[~has] = 1e3  # garbage for missing neighbors must not leak in
    cfg = LossConfig(fuse_weight=0.0, matryoshka_dims=(4, 16))
    _, parts = pinclip_loss(LossInputs(x, nb, logit_scale=SCALE, has_neighbor=has), cfg)

    sub = SimpleNamespace(**{k: v[has] for k, v in vars(x).items()})
    _, ref = pinclip_loss(
        LossInputs(sub, SimpleNamespace(pin_emb=nb.pin_emb[has]), logit_scale=SCALE), cfg
    )
    assert parts["nbr"] == pytest.approx(ref["nbr"], rel=1e-6)


def test_matryoshka_averages_renormalised_prefixes() -> None:
    x, nb = embs(d=32, seed=1), embs(d=32, seed=21)
    kw = dict(logit_scale=SCALE, co_board=torch.eye(6, dtype=torch.bool).roll(1, 1))
    both, _ = pinclip_loss(LossInputs(x, nb, **kw), LossConfig(matryoshka_dims=(8, 32)))
    small, _ = pinclip_loss(LossInputs(x, nb, **kw), LossConfig(matryoshka_dims=(8,)))
    full, _ = pinclip_loss(LossInputs(x, nb, **kw), LossConfig(matryoshka_dims=(32,)))
    torch.testing.assert_close(both, (small + full) / 2)
    # the 8-d prefix is re-normalised: scaling the tail of every vector leaves it unchanged
    y = SimpleNamespace(**{k: torch.cat([v[:, :8], 3 * v[:, 8:]], 1) for k, v in vars(x).items()})
    nb_y = SimpleNamespace(pin_emb=torch.cat([nb.pin_emb[:, :8], 3 * nb.pin_emb[:, 8:]], 1))
    small_y, _ = pinclip_loss(LossInputs(y, nb_y, **kw), LossConfig(matryoshka_dims=(8,)))
    torch.testing.assert_close(small_y, small)


def test_clear_errors() -> None:
    x = embs(d=16)
    with pytest.raises(ValueError, match="neighbor"):
        pinclip_loss(LossInputs(x, None, logit_scale=SCALE), LossConfig(matryoshka_dims=()))
    with pytest.raises(ValueError, match="logit_bias"):
        pinclip_loss(LossInputs(x, logit_scale=SCALE), LossConfig(kind="siglip", nbr_weight=0))
    with pytest.raises(ValueError, match="matryoshka_dims"):
        pinclip_loss(
            LossInputs(x, logit_scale=SCALE), LossConfig(nbr_weight=0, matryoshka_dims=(8, 64))
        )  # 64 > 16
    with pytest.raises(ValueError, match="co_board has shape"):
        pinclip_loss(
            LossInputs(x, embs(), logit_scale=SCALE, co_board=torch.ones(6, 5)),
            LossConfig(matryoshka_dims=()),
        )
    with pytest.raises(ValueError, match="log_q"):
        pinclip_loss(
            LossInputs(x, embs(), logit_scale=SCALE), LossConfig(matryoshka_dims=(), logq=True)
        )
    with pytest.raises(ValueError, match="kind"):
        LossConfig(kind="triplet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nbr_terms"):
        LossConfig(nbr_terms=("pin_text",))


class TinyPinModel(nn.Module):
    """Two linear encoders over fixed random features plus a linear fusion head."""

    def __init__(self, image_dim: int = 24, text_dim: int = 20, dim: int = 16) -> None:
        super().__init__()
        self.image = nn.Linear(image_dim, dim)
        self.text = nn.Linear(text_dim, dim)
        self.fuse = nn.Linear(2 * dim, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0))

    def forward(self, image_feats: torch.Tensor, text_feats: torch.Tensor) -> SimpleNamespace:
        img, txt = self.image(image_feats), self.text(text_feats)
        pin = self.fuse(torch.cat([img, txt], dim=-1))
        return SimpleNamespace(
            image_emb=F.normalize(img, dim=-1),
            text_emb=F.normalize(txt, dim=-1),
            pin_emb=F.normalize(pin, dim=-1),
        )


@pytest.mark.parametrize("kind", ["infonce", "siglip"])
def test_overfits_one_tiny_batch(kind: str) -> None:
    torch.manual_seed(0)
    b = 12
    image_feats, text_feats = torch.randn(2 * b, 24), torch.randn(2 * b, 20)
    anchors, neighbors = torch.arange(b), torch.arange(b, 2 * b)
    co_board = torch.zeros(b, b, dtype=torch.bool)
    co_board[0, 1] = co_board[1, 0] = True
    model = TinyPinModel()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    cfg = LossConfig(kind=kind, fuse_weight=0.5, nbr_weight=1.0, logq=True, matryoshka_dims=(8, 16))
    log_q = torch.log(torch.linspace(0.05, 0.15, b))

    history = []
    for _ in range(40):
        out = model(image_feats, text_feats)
        anchor = SimpleNamespace(**{k: v[anchors] for k, v in vars(out).items()})
        neighbor = SimpleNamespace(pin_emb=out.pin_emb[neighbors])
        loss, parts = pinclip_loss(
            LossInputs(
                anchor,
                neighbor,
                logit_scale=model.logit_scale,
                logit_bias=model.logit_bias,
                co_board=co_board,
                log_q=log_q,
                dup_ids=torch.arange(b),
            ),
            cfg,
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert all(math.isfinite(v) for v in history)
    assert history[-1] < 0.3 * history[0]
    assert parts["it_acc"] == 1.0 and parts["nbr_pin_pin_acc"] == 1.0


def _supcon(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Reference multi-positive InfoNCE: per row, mean log-softmax over its positives."""
    log_p = torch.log_softmax(logits, dim=1)
    rows = pos.any(dim=1)
    per_row = -(log_p.masked_fill(~pos, 0.0)).sum(1) / pos.sum(1).clamp(min=1)
    return per_row[rows].sum() / rows.sum()


def test_board_positives_make_every_co_board_column_a_positive() -> None:
    x, nb = embs(b=4, seed=4), embs(b=4, seed=8)
    co = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
    cfg = LossConfig(
        fuse_weight=0.0, nbr_terms=("pin_pin",), matryoshka_dims=(), nbr_positives="board"
    )
    _, parts = pinclip_loss(LossInputs(x, nb, logit_scale=SCALE, co_board=co), cfg)
    logits = SCALE.exp() * x.pin_emb @ nb.pin_emb.T
    pos = co | torch.eye(4, dtype=torch.bool)
    expected = (_supcon(logits, pos) + _supcon(logits.T, pos.T)) / 2
    assert parts["nbr"] == pytest.approx(expected.item(), rel=1e-6)
    _, pair = pinclip_loss(
        LossInputs(x, nb, logit_scale=SCALE, co_board=co),
        LossConfig(**{**cfg.__dict__, "nbr_positives": "pair"}),
    )
    assert pair["nbr"] != pytest.approx(parts["nbr"], rel=1e-3)


def test_in_batch_neighbors_align_anchors_that_share_a_board() -> None:
    x = embs(b=5, seed=3)
    co = torch.zeros(5, 5, dtype=torch.bool)
    co[0, 1] = co[1, 0] = co[2, 3] = co[3, 2] = True  # pin 4 has no board-mate in the batch
    co |= torch.eye(5, dtype=torch.bool)  # a pin shares its own boards: never its positive
    cfg = LossConfig(fuse_weight=0.0, nbr_terms=("pin_pin",), matryoshka_dims=())
    _, parts = pinclip_loss(
        LossInputs(x, None, logit_scale=SCALE, co_board=co, neighbors_in_batch=True), cfg
    )
    eye = torch.eye(5, dtype=torch.bool)
    logits = (SCALE.exp() * x.pin_emb @ x.pin_emb.T).masked_fill(eye, float("-inf"))
    pos = co & ~eye
    expected = (_supcon(logits, pos) + _supcon(logits.T, pos.T)) / 2
    assert parts["nbr"] == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="needs neighbor"):
        pinclip_loss(LossInputs(x, None, logit_scale=SCALE, co_board=co), cfg)


def test_image_only_rows_skip_every_text_term_but_keep_the_others() -> None:
    x, nb = embs(b=6, seed=5), embs(b=6, seed=15)
    has_text = torch.tensor([True, True, False, True, False, True])
    cfg = LossConfig(fuse_weight=0.5, matryoshka_dims=())
    kw = dict(logit_scale=SCALE, has_text=has_text)
    total, parts = pinclip_loss(LossInputs(x, nb, **kw), cfg)
    garbage = SimpleNamespace(**vars(x))
    garbage.text_emb = x.text_emb.clone()
    garbage.text_emb[~has_text] = unit(2, 16, seed=99)  # their (blank) text says nothing
    total_g, parts_g = pinclip_loss(LossInputs(garbage, nb, **kw), cfg)
    torch.testing.assert_close(total_g, total)
    sub = SimpleNamespace(**{k: v[has_text] for k, v in vars(x).items()})
    _, ref = pinclip_loss(
        LossInputs(sub, logit_scale=SCALE), LossConfig(nbr_weight=0, matryoshka_dims=())
    )
    assert parts["it"] == pytest.approx(ref["it"], rel=1e-6)
    # the image side of an image-only pin still learns from its neighbor
    pin = x.pin_emb.clone().requires_grad_(True)
    loss, _ = pinclip_loss(
        LossInputs(
            SimpleNamespace(image_emb=x.image_emb, text_emb=x.text_emb, pin_emb=pin), nb, **kw
        ),
        cfg,
    )
    loss.backward()
    assert pin.grad[~has_text].abs().sum() > 0


def _all_inputs(**overrides) -> LossInputs:
    """Inputs every registered term can run on (6 rows, 16 dims)."""
    fields = dict(
        logit_scale=SCALE,
        log_q=torch.full((6,), -2.0),
        board_emb=unit(6, 16, seed=21),
        board_log_q=torch.linspace(-3.0, -1.0, 6),
    )
    fields |= {"neighbor": embs(seed=11)} | overrides
    return LossInputs(embs(), **fields)


@pytest.mark.parametrize("name", LOSS_TERMS.names())
def test_every_registered_term_is_a_weighted_config_field(name: str) -> None:
    term = LOSS_TERMS.get(name)
    if term.weight is None:  # the one always-on term: the total starts from it
        assert name == LOSS_TERMS.names()[0]
        return
    fields = {f.name for f in dataclasses.fields(LossConfig)}
    assert term.weight in fields and (term.parts_field is None or term.parts_field in fields)
    off = {t.value.weight: 0.0 for t in LOSS_TERMS if t.value.weight}
    cfg = LossConfig(**{**off, term.weight: 0.7})
    total, parts = pinclip_loss(_all_inputs(), cfg)
    assert name in parts and math.isfinite(parts[name])
    assert total.item() == pytest.approx(parts["it"] + 0.7 * parts[name], rel=1e-6)
    _, without = pinclip_loss(_all_inputs(), LossConfig(**off))
    assert name not in without
    for need in term.needs:  # a missing input is named, with the weight that asked for it
        with pytest.raises(ValueError, match=f"{term.weight} > 0 needs {need}"):
            pinclip_loss(_all_inputs(**{need: None}), cfg)
