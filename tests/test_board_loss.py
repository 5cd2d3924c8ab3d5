"""The board term of pinclip.losses: logQ, membership masks, and that it trains pins to boards."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from pinclip.losses import LossConfig, LossInputs, pinclip_loss

SCALE = torch.tensor(math.log(10.0))
BOARD_ONLY = dict(fuse_weight=0.0, nbr_weight=0.0, board_weight=1.0)


def unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def anchors(b: int = 6, d: int = 8, seed: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        image_emb=unit(b, d, seed=seed),
        text_emb=unit(b, d, seed=seed + 1),
        pin_emb=unit(b, d, seed=seed + 2),
    )


def board_grad(log_q: torch.Tensor, **cfg) -> tuple[float, torch.Tensor]:
    board = unit(6, 8, seed=9).requires_grad_(True)
    loss, parts = pinclip_loss(
        LossInputs(anchors(), logit_scale=SCALE, board_emb=board, board_log_q=log_q),
        LossConfig(**{**BOARD_ONLY, **cfg}),
    )
    loss.backward()
    return parts["board"], board.grad


def test_logq_changes_the_gradient_and_a_constant_logq_does_not() -> None:
    popular = torch.tensor([-0.5, -3.0, -3.0, -3.0, -3.0, -3.0])  # board 0 drawn far more often
    plain_loss, plain = board_grad(popular, board_logq=False)
    corrected_loss, corrected = board_grad(popular)
    assert not torch.allclose(plain, corrected, atol=1e-4)
    assert corrected_loss != plain_loss
    # a constant log q shifts every anchor→board logit equally: the softmax does not move
    const_loss, const = board_grad(torch.full((6,), -2.0))
    torch.testing.assert_close(const, plain)
    assert math.isclose(const_loss, plain_loss, rel_tol=1e-6)


def test_a_board_the_anchor_is_on_is_never_its_negative() -> None:
    member = torch.zeros(6, 6, dtype=torch.bool)
    base, _ = board_grad(torch.zeros(6), board_logq=False, board_symmetric=False)
    board = unit(6, 8, seed=9)
    member[0, 3] = True  # anchor 0 is also on the board of column 3
    cfg = LossConfig(**BOARD_ONLY, board_logq=False, board_symmetric=False)
    inputs = LossInputs(anchors(), logit_scale=SCALE, board_emb=board, board_member=member)
    masked, parts = pinclip_loss(inputs, cfg)
    # hand computation of row 0 without column 3, rows 1..5 unchanged
    a = anchors().pin_emb
    logits = SCALE.exp() * a @ board.T
    rows = [-torch.log_softmax(logits[i], 0)[i] for i in range(1, 6)]
    row0 = logits[0, [0, 1, 2, 4, 5]]
    rows.append(-torch.log_softmax(row0, 0)[0])
    pin_term = torch.stack(rows).mean()
    image = anchors().image_emb
    img_logits = SCALE.exp() * image @ board.T
    img_rows = [-torch.log_softmax(img_logits[i], 0)[i] for i in range(1, 6)]
    img_rows.append(-torch.log_softmax(img_logits[0, [0, 1, 2, 4, 5]], 0)[0])
    expected = (pin_term + torch.stack(img_rows).mean()) / 2
    assert math.isclose(parts["board"], expected.item(), rel_tol=1e-5)
    assert parts["board"] != base


def test_rows_without_a_board_are_skipped_and_image_only_rows_still_train() -> None:
    has = torch.tensor([True, True, True, False, False, False])
    out, parts = pinclip_loss(
        LossInputs(
            anchors(),
            logit_scale=SCALE,
            board_emb=unit(6, 8, seed=9),
            has_board=has,
            has_text=torch.zeros(6, dtype=torch.bool),  # no text at all: the board term runs
        ),
        LossConfig(**BOARD_ONLY, board_logq=False),
    )
    assert math.isfinite(parts["board"]) and "it" in parts
    first = SimpleNamespace(**{k: v[:3] for k, v in vars(anchors()).items()})
    small, _ = pinclip_loss(
        LossInputs(
            first,
            logit_scale=SCALE,
            board_emb=unit(6, 8, seed=9)[:3],
            has_text=torch.zeros(3, dtype=torch.bool),
        ),
        LossConfig(**BOARD_ONLY, board_logq=False),
    )
    assert math.isclose(out.item(), small.item(), rel_tol=1e-5)


def test_pins_learn_their_own_board_on_a_tiny_graph() -> None:
    """4 boards × 8 pins; a pin's features are its board's centre plus noise, a board's
    'title' features another random view of the centre. A few steps of the board term
    alone make each pin score its own board above the other three."""
    torch.manual_seed(0)
    n_boards, per, d_in, d = 4, 8, 16, 8
    centre = torch.randn(n_boards, d_in)
    board_of = torch.arange(n_boards).repeat_interleave(per)
    x = centre[board_of] + 0.3 * torch.randn(len(board_of), d_in)
    title = centre @ torch.randn(d_in, d_in) * 0.5 + 0.1 * torch.randn(n_boards, d_in)
    pin_tower, board_tower = nn.Linear(d_in, d), nn.Linear(d_in, d)

    def accuracy() -> float:
        with torch.no_grad():
            scores = F.normalize(pin_tower(x), dim=-1) @ F.normalize(board_tower(title), dim=-1).T
        return (scores.argmax(1) == board_of).float().mean().item()

    before = accuracy()
    opt = torch.optim.Adam([*pin_tower.parameters(), *board_tower.parameters()], lr=0.05)
    cfg = LossConfig(**BOARD_ONLY, board_terms=("pin_board",), board_logq=False)
    g = torch.Generator().manual_seed(1)
    for _ in range(40):
        rows = torch.randperm(len(x), generator=g)[:12]
        pin = F.normalize(pin_tower(x[rows]), dim=-1)
        member = board_of[rows][:, None] == board_of[rows][None, :]  # same board: not negative
        out = SimpleNamespace(image_emb=pin.detach(), text_emb=pin.detach(), pin_emb=pin)
        loss, _ = pinclip_loss(
            LossInputs(
                out,
                logit_scale=SCALE,
                board_emb=F.normalize(board_tower(title[board_of[rows]]), dim=-1),
                board_member=member,
            ),
            cfg,
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert accuracy() >= 0.95 > before
