"""Tests of flags/imagenet.py with a fresh FlagValues."""

import pytest
from absl import flags

from flags import imagenet as imagenet_flags
from tfool.projection import ProjectionConfig
from tfool.survey import SurveyConfig


def parse(*args):
    fv = flags.FlagValues()
    imagenet_flags.define_imagenet_flags(fv)
    fv(["prog", *args])
    return fv


def test_defaults():
    config = imagenet_flags.imagenet_config(parse())
    assert config.model == "vgg16" and config.weights == "imagenet" and config.image is None
    assert config.input_size is None
    assert config.targets == (385, 549)  # Indian_elephant, envelope
    assert config.projection == ProjectionConfig()
    assert config.survey == SurveyConfig()
    assert [name for name, _ in config.survey_models] == list(imagenet_flags.SURVEY_MODELS)
    assert all(weights == "imagenet" for _, weights in config.survey_models)


def test_every_flag_is_prefixed_and_documented():
    fv = parse()
    names = [f.name for f in fv.get_flags_for_module(imagenet_flags.__name__)]
    assert len(names) == 19
    for name in names:
        assert name.startswith(("fgsm_imagenet_", "fgsm_project_", "fgsm_survey_", "fgsm_photo")), (
            name
        )
        assert fv[name].help.endswith("."), name


def test_conversion():
    fv = parse(
        "--fgsm_imagenet_model=inception_v3",
        "--fgsm_imagenet_weights=none",
        "--fgsm_imagenet_image_size=96",
        "--fgsm_project_image=cat.jpg",
        "--fgsm_project_targets=great white shark,3,n01440764",
        "--fgsm_project_steps=7",
        "--fgsm_project_step_size=0.5",
        "--fgsm_project_eps=4",
        "--fgsm_project_threshold=0.5",
        "--fgsm_project_normalize=sign",
        "--fgsm_survey_models=resnet50,vgg16=/w/vgg.h5",
        "--fgsm_survey_weights=none",
        "--fgsm_survey_num_images=10",
        "--fgsm_survey_noise=uniform",
        "--fgsm_survey_batch_size=5",
        "--fgsm_survey_image_size=256",
    )
    config = imagenet_flags.imagenet_config(fv)
    assert config.model == "inception_v3" and config.weights is None
    assert config.input_size == 96
    assert config.image == "cat.jpg" and config.targets == (2, 3, 0)
    assert config.projection == ProjectionConfig(7, 0.5, 4.0, 0.5, "sign")
    assert config.survey_models == (("resnet50", None), ("vgg16", "/w/vgg.h5"))
    assert config.survey == SurveyConfig(10, "uniform", 5, 256)


def test_zero_eps_means_no_budget():
    config = imagenet_flags.imagenet_config(parse("--fgsm_project_eps=0"))
    assert config.projection.eps is None


def test_unknown_target_name_suggests():
    fv = parse("--fgsm_project_targets=envelop")
    with pytest.raises(ValueError, match="close matches: envelope"):
        imagenet_flags.imagenet_config(fv)


@pytest.mark.parametrize(
    "arg",
    [
        "--fgsm_imagenet_model=alexnet",
        "--fgsm_project_steps=0",
        "--fgsm_project_step_size=0",
        "--fgsm_project_threshold=0",
        "--fgsm_project_threshold=1.5",
        "--fgsm_project_eps=-1",
        "--fgsm_project_eps=nan",
        "--fgsm_project_eps=inf",
        "--fgsm_project_step_size=nan",
        "--fgsm_project_normalize=l2",
        "--fgsm_project_targets=",
        "--fgsm_survey_models=vgg16,alexnet",
        "--fgsm_survey_models=vgg16,vgg16",
        "--fgsm_survey_num_images=0",
        "--fgsm_survey_noise=pink",
        "--fgsm_survey_batch_size=0",
        "--fgsm_survey_image_size=-3",
    ],
)
def test_bad_flags(arg):
    with pytest.raises(flags.Error):
        parse(arg)
