"""ImageNet flags of run_fgsm.py, derived from the library's experiment configs: the
classifier (``--fgsm_imagenet_*``: ``tfool.imagenet.ModelSpec``), gradient projection
(``--fgsm_project_*``: ``ProjectionExperiment`` and ``ProjectionConfig``), the noise survey
(``--fgsm_survey_*``: ``SurveyExperiment`` and ``SurveyConfig``, whose seed is ``--seed``)
and the photos (``--fgsm_photos``, ``--fgsm_photo_*``: ``PhotoExperiment`` and
``PhotoConfig``)."""

from __future__ import annotations

from absl import flags

from flags import spine
from tfool.experiments import PhotoConfig, PhotoExperiment
from tfool.imagenet import ModelSpec
from tfool.projection import ProjectionConfig, ProjectionExperiment
from tfool.survey import SurveyConfig, SurveyExperiment

#: Every config with flags: (class, flag prefix, fields without a flag: the nested configs,
#: the survey's input size (``--fgsm_imagenet_image_size``), the seed (``--seed``), and the
#: photo settings that never had a flag).
GROUPS = (
    (ModelSpec, "fgsm_imagenet", ()),
    (ProjectionExperiment, "fgsm_project", ("model", "projection")),
    (ProjectionConfig, "fgsm_project", ()),
    (SurveyExperiment, "fgsm_survey", ("input_size", "survey")),
    (SurveyConfig, "fgsm_survey", ("seed",)),
    (PhotoExperiment, "fgsm", ("model", "photo")),
    (PhotoConfig, "fgsm_photo", ("methods", "batch_size")),
)


def define_imagenet_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the ``--fgsm_imagenet_*``, ``--fgsm_project_*``, ``--fgsm_survey_*`` and
    ``--fgsm_photo*`` flags of the ``GROUPS`` configs.

    Args:
        flag_values: Where to define them (a fresh ``FlagValues`` in tests).
    """
    for cls, prefix, exclude in GROUPS:
        spine.define_config_flags(cls, prefix, flag_values, exclude=exclude)


def _config(cls: type, flag_values: flags.FlagValues, **given):
    prefix, _ = next((p, e) for c, p, e in GROUPS if c is cls)
    return spine.config_from_flags(cls, prefix, flag_values, **given)


def model_spec(flag_values: flags.FlagValues = flags.FLAGS) -> ModelSpec:
    """The classifier of ``--fgsm_imagenet_*``."""
    return _config(ModelSpec, flag_values)


def projection_experiment(flag_values: flags.FlagValues = flags.FLAGS) -> ProjectionExperiment:
    """The project mode's ``ProjectionExperiment`` from the parsed flags."""
    projection = _config(ProjectionConfig, flag_values)
    return _config(
        ProjectionExperiment, flag_values, model=model_spec(flag_values), projection=projection
    )


def survey_experiment(flag_values: flags.FlagValues = flags.FLAGS) -> SurveyExperiment:
    """The survey mode's ``SurveyExperiment`` from the parsed flags (and ``--seed``)."""
    seed = flag_values["seed"].value if "seed" in flag_values else 0
    survey = _config(SurveyConfig, flag_values, seed=seed)
    size = model_spec(flag_values).image_size
    return _config(SurveyExperiment, flag_values, input_size=size, survey=survey)


def photo_experiment(flag_values: flags.FlagValues = flags.FLAGS) -> PhotoExperiment:
    """The photos mode's ``PhotoExperiment`` from the parsed flags."""
    photo = _config(PhotoConfig, flag_values)
    return _config(PhotoExperiment, flag_values, model=model_spec(flag_values), photo=photo)
