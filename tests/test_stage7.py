"""Stage 7: stage 6's hierarchy as dilated causal convolutions over whole names.

The promise: the same function of each window. Stage 6's weights loaded into stage 7 give, at
every position of every name, the logits stage 6 gives for that position's window of 8."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from makemore_wavenet.shared.data import IGNORE, build_dataset, build_names, load_words, split_words
from makemore_wavenet.shared.sampling import sample
from makemore_wavenet.shared.trainer import evaluate, run, train
from makemore_wavenet.shared.config import Runtime
from makemore_wavenet.stages import count_parameters, get_stage
from makemore_wavenet.stages.stage7_dilated_convolutions.model import load_stage6

SIX, SEVEN = get_stage(6), get_stage(7)


@pytest.fixture(scope="module")
def trained_pair(splits_by_block):
    """A stage-6 model after 300 steps (its running statistics moved), and stage 7 holding its weights."""
    torch.manual_seed(0)
    six = SIX.build_model(SIX.config)
    train(six, *splits_by_block(8)["train"], replace(SIX.recipe, steps=300), whole_names=False, progress=False)
    seven = load_stage6(SEVEN.build_model(SEVEN.config), six.state())
    return six.eval(), seven.eval()


def test_stage_6_weights_give_the_same_logits_at_every_position(trained_pair):
    six, seven = trained_pair
    words = split_words(load_words())["val"][:500]
    X, Y = build_names(words, 8)
    windows, targets = build_dataset(words, 8)
    with torch.no_grad():
        per_position, per_window = seven(X), six(windows)  # (N, L + 1, 27), (examples, 27)
    real = Y != IGNORE
    assert torch.equal(Y[real], targets)  # the positions, in order, are the examples
    assert (per_position[real] - per_window).abs().max().item() < 1e-5


def test_stage_6_weights_give_the_same_val_loss_and_samples(trained_pair, splits_by_block, splits_of_stage):
    six, seven = trained_pair
    assert evaluate(seven, *splits_of_stage(7)["val"]) == pytest.approx(evaluate(six, *splits_by_block(8)["val"]),
                                                                        abs=1e-6)
    assert sample(seven, SEVEN.config, n=10, seed=3) == sample(six, SIX.config, n=10, seed=3)


def test_whole_names_hold_the_lectures_val_examples(splits_of_stage):
    X, Y = splits_of_stage(7)["val"]
    assert int((Y != IGNORE).sum()) == 22_655  # one prediction per position: the lecture's val examples
    assert X.shape[1] == Y.shape[1] + 7  # a receptive field of 8: 7 more inputs than predictions


def test_build_names_pads_on_both_sides():
    X, Y = build_names(["ab", "c"], 3)
    assert X.tolist() == [[0, 0, 0, 1, 2], [0, 0, 0, 3, 0]]
    assert Y.tolist() == [[1, 2, 0], [3, 0, IGNORE]]


def test_parameters_and_shapes():
    model = SEVEN.build_model(SEVEN.config)
    assert count_parameters(model) == SEVEN.lecture.params == 76_579
    x = torch.randint(0, 27, (4, 8 + 6))
    assert model(x).shape == (4, 7, 27)
    assert [tuple(m.out.shape) for m in model.layers[1:10:3]] == [(4, 13, 128), (4, 11, 128), (4, 7, 128)]


def test_forward_and_backward_on_meta_device_leave_nothing_on_cpu():
    model = SEVEN.build_model(SEVEN.config, device="meta")
    x = torch.zeros(32, 20, dtype=torch.long, device="meta")
    y = torch.zeros(32, 13, dtype=torch.long, device="meta")
    params = model.parameters()
    for p in params:
        p.requires_grad_()
    F.cross_entropy(model(x).reshape(-1, 27), y.reshape(-1)).backward()
    tensors = [*model.state().values(), *(p.grad for p in params), *(m.out for m in model.modules())]
    assert all(t.device.type == "meta" for t in tensors)


def test_a_step_learns_from_every_position_and_is_reproducible(splits_of_stage):
    config = replace(SEVEN.recipe, steps=150)
    a, b = (run(SEVEN.build_model, SEVEN.config, config, splits_of_stage(7), Runtime(device="cpu"), progress=False,
                eval_splits=("val",))
            for _ in range(2))
    assert torch.equal(a.losses, b.losses)
    assert a.losses[-30:].mean() < a.losses[:5].mean() - 0.3


def test_a_state_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="stage-6 state"):
        load_stage6(SEVEN.build_model(SEVEN.config), get_stage(1).build_model(get_stage(1).config).state())



@pytest.mark.parametrize("bn_positions", [0, 1000])  # all positions; a sample of more than there are
def test_padding_after_the_names_changes_nothing_in_training_mode(bn_positions):
    """BatchNorm's batch statistics count real windows only: more padding, same outputs."""
    torch.manual_seed(0)
    model = SEVEN.build_model(replace(SEVEN.config, bn_positions=bn_positions), dtype=torch.float64)
    X, Y = build_names(["emma", "olivia", "ava", "isabella"], 8)
    padded = torch.cat([X, torch.zeros(len(X), 5, dtype=torch.long)], dim=1)
    real = Y != IGNORE
    assert torch.allclose(model(X)[real], model(padded)[:, :Y.shape[1]][real])


def test_batchnorm_statistics_from_a_sample_of_positions_in_training_only():
    """bn_positions changes training (each BatchNorm's statistics come from a random sample of
    the real positions), not the model: eval mode, which uses running statistics, is unchanged."""
    X, _ = build_names(["emma", "olivia", "ava", "isabella", "sophia", "mia"], 8)
    torch.manual_seed(0)
    whole = SEVEN.build_model(replace(SEVEN.config, bn_positions=0), dtype=torch.float64)
    torch.manual_seed(0)
    sampled = SEVEN.build_model(replace(SEVEN.config, bn_positions=5), dtype=torch.float64)
    assert torch.equal(whole.eval()(X), sampled.eval()(X))
    assert not torch.allclose(whole.train()(X), sampled.train()(X))
    with pytest.raises(ValueError, match="whole names"):
        replace(SIX.config, bn_positions=32)
