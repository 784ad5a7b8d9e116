"""tfool.references: reference sets built once, unpadded, in their stored layout."""

import numpy as np
import pytest
import tensorflow as tf

from tfool import classifier, costs
from tfool.references import build_reference_set


@pytest.fixture(scope="module")
def act(small_cnn):
    return classifier.activation_model(small_cnn)


def test_reference_set_holds_every_image_of_each_label(act, small_data):
    labels = (7, 2)
    refs = build_reference_set(act, small_data, labels, batch_size=33)
    assert refs.labels == labels and refs.layer_names == ("inputs", "conv0", "conv1", "fc")
    assert refs.sizes == tuple(int(np.sum(small_data.y_train == lbl)) for lbl in labels)
    x = small_data.train_of_class(2)
    out = act(x, training=False)
    for k, name in enumerate(refs.layer_names):
        want = out[name].numpy().reshape(len(x), -1)
        stored = refs.activations[k][1].numpy()
        assert stored.shape == (want.shape[1], len(x))  # [D, N]: one column per image
        np.testing.assert_allclose(stored.T, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(refs.sq_norms[k][1].numpy(), (want**2).sum(1), rtol=1e-4)
        np.testing.assert_allclose(refs.rows(k, 1).numpy(), want, rtol=1e-5, atol=1e-6)
    dims = [int(np.prod(out[name].shape[1:])) for name in refs.layer_names]
    assert refs.nbytes == 4 * sum(refs.sizes) * (sum(dims) + len(dims))  # float32, no padding


def test_reference_size_dtype_and_subsets(act, small_data):
    refs = build_reference_set(act, small_data, (1, 4, 9), reference_size=10, dtype="bfloat16")
    assert refs.sizes == (10, 10, 10) and refs.dtype == "bfloat16"
    assert all(t.dtype == tf.bfloat16 for layer in refs.activations for t in layer)
    assert all(t.dtype == tf.float32 for layer in refs.sq_norms for t in layer)
    sub = refs.for_labels((9, 1))
    assert sub.labels == (9, 1) and sub.activations[0][0] is refs.activations[0][2]
    with pytest.raises(ValueError, match=r"labels \[5\] are not in the reference set"):
        refs.for_labels((5,))
    stacked, norms = refs.padded(2, [0, 2])
    assert stacked.shape == (2, 10, refs.activations[2][0].shape[0])
    np.testing.assert_allclose(stacked[1], refs.rows(2, 2).numpy())


def test_padded_marks_padding_rows(act, small_data):
    refs = build_reference_set(act, small_data, (0, 1))
    stacked, norms = refs.padded(3, [0, 1])
    small = min(refs.sizes)
    short = int(np.argmin(refs.sizes))
    assert np.all(norms[short, small:] == costs.PAD_NORM)
    assert np.all(stacked[short, small:] == 0)


def test_bad_dtype_and_empty_label(act, small_data):
    with pytest.raises(ValueError, match="reference dtype 'float64' is not one of"):
        build_reference_set(act, small_data, (0,), dtype="float64")
    with pytest.raises(ValueError, match="label 11 has no training images"):
        build_reference_set(act, small_data, (0, 11))


def test_per_unit_layers_are_sorted_and_not_split(act, small_data):
    refs = build_reference_set(act, small_data, (3,), per_unit_layers=("fc",))
    assert refs.per_unit == (False, False, False, True) and refs.is_per_unit(3)
    fc = refs.activations[3][0].numpy()
    x = small_data.train_of_class(3)
    want = np.sort(act(x, training=False)["fc"].numpy().T, axis=1)  # [D, N], each unit sorted
    np.testing.assert_allclose(fc, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="cannot be split across replicas"):
        refs.padded(3, [0])
    with pytest.raises(ValueError, match=r"per_unit_layers \['dense'\] are not exposed layers"):
        build_reference_set(act, small_data, (3,), per_unit_layers=("dense",))
