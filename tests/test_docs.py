"""The guide docs/own_model.md runs: its python blocks, in order, as one script."""

import re
from pathlib import Path

import numpy as np
import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "own_model.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_TEXT = re.compile(r"^```text\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[str]:
    """The code of every ```python block of a markdown page, in order."""
    return _BLOCK.findall(text)


def test_python_blocks_are_found():
    page = "a\n```python\nx = 1\n```\ntext\n```bash\nls\n```\n```python\ny = 2\n```\n"
    assert python_blocks(page) == ["x = 1\n", "y = 2\n"]


@pytest.fixture(scope="module")
def guide(tmp_path_factory, monkeypatch_module):
    """The namespace after running every python block of the guide, the printed output
    and the folder it ran in."""
    import contextlib
    import io

    blocks = python_blocks(GUIDE.read_text())
    folder = tmp_path_factory.mktemp("guide")
    monkeypatch_module.chdir(folder)
    namespace = {"__name__": "__guide__"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for number, code in enumerate(blocks, start=1):
            try:
                exec(compile(code, f"{GUIDE.name}, python block {number}", "exec"), namespace)
            except Exception as err:
                tail = "\n".join(printed.getvalue().splitlines()[-10:])
                pytest.fail(
                    f"{GUIDE.name}: python block {number} failed: {err!r}\n"
                    f"--- block {number}:\n{code}--- last output:\n{tail}"
                )
    return {"ns": namespace, "printed": printed.getvalue(), "folder": folder, "blocks": blocks}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_guide_has_its_python_blocks(guide):
    assert len(guide["blocks"]) >= 10


def test_quoted_outputs_were_printed(guide):
    """Every ```text block of the page is output the code really printed."""
    quoted = _TEXT.findall(GUIDE.read_text())
    assert len(quoted) >= 4
    for text in quoted:
        for line in text.strip().splitlines():
            assert line in guide["printed"].splitlines(), line


def test_dataset_from_arrays(guide):
    ds = guide["ns"]["ds"]
    assert (ds.source, ds.name) == ("arrays", "digits")
    assert ds.class_names == ("zero", "one", "two")
    assert ds.x_train.shape == (600, 28, 28, 1) and ds.x_test.shape == (200, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() < ds.x_train.max() <= 1.0
    assert set(np.unique(ds.y_train)) == {0, 1, 2}


def test_model_is_trained_and_read_before_its_softmax(guide):
    ns = guide["ns"]
    assert ns["test_accuracy"] > 0.9
    assert ns["is_logits"] is True
    assert ns["logits"] is not ns["model"]
    assert ns["logits"].layers[-1].name == "classes_logits"


def test_default_layer_names(guide):
    from tfool import classifier

    names = classifier.default_layer_names(guide["ns"]["model"])
    assert names == ("image", "conv_a", "conv_b", "hidden", "probabilities")
    assert guide["ns"]["result"].layer_names == names


def test_backworked_images_are_confident_and_the_models_own(guide):
    ns = guide["ns"]
    result, model = ns["result"], ns["model"]
    assert result.images.shape == (3, 4, 28, 28, 1)
    assert result.probabilities.shape == (3, 4, 3)
    assert result.target_probs.shape == (3, 4)
    assert list(result.labels) == [0, 1, 2]
    assert 0.0 <= result.images.min() and result.images.max() <= 1.0
    own = model.predict(result.images.reshape(-1, 28, 28, 1), verbose=0)
    np.testing.assert_allclose(own.reshape(3, 4, 3), result.probabilities, atol=1e-5)
    # the page says every image passed 0.99 for its label
    assert result.target_probs.min() > 0.99
    assert result.steps <= 60


def test_figures_are_written(guide):
    for name in ("backworked.png", "attributions.png"):
        path = guide["folder"] / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_fgsm_sweep(guide):
    ns = guide["ns"]
    sweep = ns["sweep"]
    assert sweep.methods == ("fgsm", "random")
    assert sweep.eps_values == (0.0, 0.05, 0.1, 0.2)
    assert sweep.num_images == 100
    curves = sweep.curves()
    assert curves["fgsm"][0] == curves["random"][0] == sweep.clean_accuracy > 0.9
    # the page says FGSM's accuracy falls quickly while same-size noise barely changes it
    assert curves["fgsm"][-1] < sweep.clean_accuracy - 0.3
    assert curves["random"][-1] > sweep.clean_accuracy - 0.1
    header, rows = sweep.table()
    assert "accuracy" in header and len(rows) == 8


def test_single_fgsm(guide):
    ns = guide["ns"]
    x, x_adv = ns["x"], ns["x_adv"]
    assert x_adv.shape == x.shape
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert 0.0 <= x_adv.min() and x_adv.max() <= 1.0
    assert ns["fgsm_accuracy"] < ns["sweep"].clean_accuracy


def test_attributions(guide):
    ns = guide["ns"]
    maps = ns["maps"]
    assert list(maps) == [
        "saliency",
        "gradient_x_input",
        "integrated_gradients",
        "noise_tunnel",
        "occlusion",
    ]
    for name, values in maps.items():
        assert values.shape == (3, 28, 28, 1), name
        assert np.all(np.isfinite(values)), name
    assert ns["ig"].shape == (3, 28, 28, 1)
    assert np.abs(ns["delta"]).max() < 1e-2


def test_saved_files_load_back(guide):
    from tfool import data

    again = data.load_arrays(guide["folder"] / "my.npz")
    ds = guide["ns"]["ds"]
    assert again.class_names == ds.class_names
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    assert (guide["folder"] / "my_model.keras").is_file()
