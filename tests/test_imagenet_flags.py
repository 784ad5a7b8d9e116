"""Tests of flags/imagenet.py with a fresh FlagValues."""

import pytest
from absl import flags
from tiny_runs import parse_flags

from flags import imagenet as imagenet_flags
from tfool.experiments import PhotoConfig, PhotoExperiment
from tfool.imagenet import ModelSpec
from tfool.projection import ProjectionConfig
from tfool.survey import SURVEY_MODELS, SurveyConfig, SurveyExperiment


def parse(*args):
    """Fresh imagenet flags parsed from ``args``."""
    return parse_flags(imagenet_flags.define_imagenet_flags, *args)


def test_defaults():
    project = imagenet_flags.projection_experiment(parse())
    assert project.model == ModelSpec("vgg16", "imagenet", None) and project.image is None
    assert project.target_indices() == (385, 549)  # Indian_elephant, envelope
    assert project.projection == ProjectionConfig()
    found = imagenet_flags.survey_experiment(parse())
    assert found == SurveyExperiment() and found.survey == SurveyConfig()
    assert [s.model for s in found.model_specs()] == list(SURVEY_MODELS)
    assert all(s.weights == "imagenet" for s in found.model_specs())
    assert imagenet_flags.photo_experiment(parse()) == PhotoExperiment()


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
        "--fgsm_photos=chelsea,/x/a.png",
        "--fgsm_photo_eps=2,16",
        "--fgsm_photo_ig_steps=3",
    )
    project = imagenet_flags.projection_experiment(fv)
    assert project.model == ModelSpec("inception_v3", None, 96)
    assert project.image_path() == "cat.jpg" and project.target_indices() == (2, 3, 0)
    assert project.projection == ProjectionConfig(7, 0.5, 4.0, 0.5, "sign")
    found = imagenet_flags.survey_experiment(fv)
    assert found.model_specs() == (
        ModelSpec("resnet50", None, 96),
        ModelSpec("vgg16", "/w/vgg.h5", 96),
    )
    assert found.survey == SurveyConfig(10, "uniform", 5, 256)
    photos = imagenet_flags.photo_experiment(fv)
    assert photos.model == project.model and photos.photo == PhotoConfig((2.0, 16.0), ig_steps=3)
    assert photos.photo_paths()[1] == "/x/a.png"
    assert photos.photo_paths()[0].endswith("chelsea.png")


def test_the_survey_seed_is_the_common_seed():
    fv = flags.FlagValues()
    flags.DEFINE_integer("seed", 0, "The seed.", flag_values=fv)
    imagenet_flags.define_imagenet_flags(fv)
    fv(["prog", "--seed=5"])
    assert imagenet_flags.survey_experiment(fv).survey.seed == 5


@pytest.mark.parametrize(
    "args",
    [
        ("--fgsm_project_eps=0", "--fgsm_imagenet_image_size=0", "--fgsm_survey_image_size=0"),
        ("--fgsm_project_image=grey", "--fgsm_imagenet_weights=imagenet"),
        ("--fgsm_project_image=GREY",),
    ],
)
def test_what_earlier_flags_files_wrote_for_unset_is_unset(args):
    fv = parse(*args)
    assert imagenet_flags.projection_experiment(fv) == imagenet_flags.projection_experiment(parse())
    assert imagenet_flags.survey_experiment(fv) == imagenet_flags.survey_experiment(parse())


def test_unknown_target_name_suggests():
    fv = parse("--fgsm_project_targets=envelop")
    with pytest.raises(ValueError, match="close matches: envelope"):
        imagenet_flags.projection_experiment(fv).target_indices()


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
        "--fgsm_imagenet_image_size=-1",
        "--fgsm_survey_weights=random",
        "--fgsm_photos=",
        "--fgsm_photo_ig_steps=0",
    ],
)
def test_bad_flags(arg):
    with pytest.raises(flags.Error):
        parse(arg)
