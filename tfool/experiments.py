"""The experiments of ``run_fgsm.py`` built on the attacks and attributions, as library
functions that return result objects (``tfool.report`` writes their files): the robustness
sweep with its example images, the attributions of test images beside their FGSM images,
and FGSM and attributions on photos."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfool import attacks, attribution
from tfool._tf import is_finite_number
from tfool.config import setting
from tfool.data import Dataset
from tfool.imagenet import ModelSpec, resolve_image

#: Goodfellow et al. (2015), MNIST error rates under FGSM at eps 0.25.
GOODFELLOW_ERRORS = {"shallow softmax": 0.999, "maxout network": 0.894}
#: The attack sizes of the default sweep.
DEFAULT_EPS = (0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


@dataclasses.dataclass(frozen=True)
class AttackExperimentConfig:
    """The settings of the attack sweep and of the attribution comparison.

    Attributes:
        methods: Attacks to run, distinct names; random is the random-sign control of the
            same L-infinity size, fgm_l2 reads eps as an L2 length.
        eps_values: Attack sizes in pixel units of the [0, 1] range, each >= 0.
        targeted: Whether the attacks move every image toward a target class
            (``target_class``) instead of away from its predicted class.
        target_class: Target class of a targeted run, an index >= 0; ``None``: each image's
            least likely class (Kurakin et al.'s l.l. attacks). Needs ``targeted``.
        steps: Iterations of bim and pgd, >= 1; 0 or None uses Kurakin et al.'s rule
            min(255 eps + 4, 1.25 * 255 eps) steps of 1/255 per eps.
        step_size: Step of bim and pgd in pixel units, > 0; 0 or None picks it:
            2.5 * eps / steps, or 1/255 with Kurakin's step count.
        num_images: Test images to attack (the first ones), >= 1; ``None``: the whole
            test set.
        batch_size: Images per compiled attack step (the global batch under a strategy),
            >= 1.
        example_eps: Attack size of examples.png, of the gradient-sign image and of the
            FGSM images of attribution.png, >= 0.
        num_examples: Correctly classified test images shown in examples.png, 1..50.
        attribute_num_images: Correctly classified test images of attribution.png, each
            shown beside its FGSM counterpart, 1..20.
        attribute_methods: Attribution methods of attribution.png, in column order,
            distinct names.
        seed: Seed of the random attacks (the random-sign control and PGD's random start),
            an integer >= 0.
    """

    methods: tuple[str, ...] = setting(attacks.DEFAULT_METHODS, choices=attacks.METHODS)
    eps_values: tuple[float, ...] = setting(DEFAULT_EPS, flag="fgsm_eps")
    targeted: bool = False
    target_class: int | None = None
    steps: int | None = setting(5, none=0)
    step_size: float | None = setting(None, none=0)
    num_images: int | None = None
    batch_size: int = attacks.DEFAULT_BATCH_SIZE
    example_eps: float = 0.25
    num_examples: int = 6
    attribute_num_images: int = 4
    attribute_methods: tuple[str, ...] = setting(
        attribution.DEFAULT_METHODS, choices=attribution.ALL_METHODS
    )
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "attribute_methods", tuple(self.attribute_methods))
        _distinct("methods", self.methods, attacks.METHODS)
        _distinct("attribute_methods", self.attribute_methods, attribution.ALL_METHODS)
        eps = tuple(self.eps_values)
        if not eps or not all(is_finite_number(e) and e >= 0 for e in eps):
            raise ValueError(f"eps_values={self.eps_values} must be one or more numbers >= 0")
        object.__setattr__(self, "eps_values", tuple(float(e) for e in eps))
        if not (is_finite_number(self.example_eps) and self.example_eps >= 0):
            raise ValueError(f"example_eps={self.example_eps} must be a number >= 0")
        if self.step_size is not None and not (
            is_finite_number(self.step_size) and self.step_size > 0
        ):
            raise ValueError(f"step_size={self.step_size} must be a number > 0 or None")
        for name in ("steps", "num_images", "target_class"):
            value = getattr(self, name)
            low = 0 if name == "target_class" else 1
            if value is not None and (int(value) != value or value < low):
                raise ValueError(f"{name}={value} must be an integer >= {low} or None")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be an integer >= 1")
        for name, most in (("num_examples", 50), ("attribute_num_images", 20)):
            value = getattr(self, name)
            if int(value) != value or not 1 <= value <= most:
                raise ValueError(f"{name}={value} must be an integer in 1..{most}")
        if self.target_class is not None and not self.targeted:
            raise ValueError(f"target_class={self.target_class} needs targeted=True")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ValueError(f"seed={self.seed!r} must be an integer >= 0")
        if self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be an integer >= 0")

    def check_data(self, dataset: Dataset) -> None:
        """Refuses a test-image count or a target class the data cannot give.

        Raises:
            ValueError: ``num_images`` exceeds the data's test images, or ``target_class``
                is not one of its classes.
        """
        if self.num_images is not None and self.num_images > len(dataset.x_test):
            raise ValueError(
                f"num_images={self.num_images} is more than the {len(dataset.x_test)} test "
                f"images of {dataset.name}; expected at most {len(dataset.x_test)}"
            )
        if self.target_class is not None and self.target_class >= dataset.num_classes:
            raise ValueError(
                f"target_class={self.target_class} is not a class of {dataset.name}; expected "
                f"0..{dataset.num_classes - 1}"
            )

    def attack_options(self, labels: np.ndarray) -> dict:
        """Untargeted runs attack the true labels; targeted ones a class or the least likely."""
        least_likely = self.targeted and self.target_class is None
        y = None if least_likely else (self.target_class if self.targeted else labels)
        return dict(y=y, targeted=self.targeted and not least_likely, least_likely=least_likely)

    def hyperparameters(self) -> dict:
        """The attacks' hyperparameters (``tfool.attacks.SWEEP_HYPERPARAMETERS``: ``steps``,
        ``step_size``, ``seed``), for ``tfool.attacks.sweep`` and ``tfool.attacks.attack``."""
        return {name: getattr(self, name) for name in attacks.SWEEP_HYPERPARAMETERS}


def _distinct(name: str, values: Sequence[str], known: Sequence[str]) -> None:
    if not values or len(set(values)) != len(values) or not set(values) <= set(known):
        raise ValueError(f"{name}={values} must list distinct names from {', '.join(known)}")


def answers(probs: np.ndarray, names: Sequence[str]) -> list[str]:
    """``"<class> (<p>%)"`` of every row's top class."""
    return [f"{names[p.argmax()]} ({100 * p.max():.0f}%)" for p in probs]


@dataclasses.dataclass(frozen=True, eq=False)
class AttackExamples:
    """The first correctly classified images under every attack at one eps (none when
    the model classifies none of the attacked images correctly).

    Attributes:
        images: ``[N, ...]`` the original images.
        adversarial: Per method, ``[N, ...]`` its adversarial images.
        titles: Per method, ``(answer on the perturbation, answer on the adversarial)``.
        originals: ``"<label>: <answer>"`` per original image.
        eps: The attack size.
    """

    images: np.ndarray
    adversarial: dict
    titles: dict
    originals: list
    eps: float


@dataclasses.dataclass(frozen=True, eq=False)
class SweepReport:
    """What ``attack_sweep`` found.

    Attributes:
        result: The ``tfool.attacks.SweepResult``.
        report: The JSON-ready report (``robustness.json``).
        examples: The example images of every attack.
        dataset_name: The data's name.
        num_images: Test images attacked.
    """

    result: attacks.SweepResult
    report: dict
    examples: AttackExamples
    dataset_name: str
    num_images: int


def _examples(model, x, y, clean, config, options, names, strategy) -> AttackExamples:
    keep = np.flatnonzero(clean.argmax(-1) == y)[: config.num_examples]
    xe = x[keep]
    if not len(keep):  # nothing classified correctly: no examples, nothing to attack
        empty = {method: xe for method in config.methods}
        return AttackExamples(xe, empty, {m: [] for m in config.methods}, [], config.example_eps)
    if isinstance(options["y"], np.ndarray):
        options = dict(options, y=options["y"][keep])
    advs, titles = {}, {}
    for method in config.methods:
        adv = attacks.attack(
            method,
            model,
            xe,
            config.example_eps,
            **config.hyperparameters(),
            strategy=strategy,
            **options,
        )
        on_delta = answers(attacks.probabilities(model, adv - xe, strategy=strategy), names)
        on_adv = answers(attacks.probabilities(model, adv, strategy=strategy), names)
        advs[method], titles[method] = adv, list(zip(on_delta, on_adv, strict=True))
    originals = [
        f"{names[t]}: {a}" for t, a in zip(y[keep], answers(clean[keep], names), strict=True)
    ]
    return AttackExamples(xe, advs, titles, originals, config.example_eps)


def gradient_sign_image(model, x, eps, options, strategy=None) -> dict:
    """The model's answers on the post's gradient-sign image ``eps * sign(grad)`` itself."""
    grad = attacks.loss_gradient(
        model, x, options["y"], least_likely=options["least_likely"], strategy=strategy
    )
    probs = attacks.probabilities(model, eps * np.sign(grad), strategy=strategy)
    conf = probs.max(-1)
    return dict(
        eps=eps,
        mean_confidence=float(conf.mean()),
        fraction_confident_over_90=float(np.mean(conf > 0.9)),
        predicted_class_counts=np.bincount(probs.argmax(-1), minlength=probs.shape[-1]),
    )


def attack_sweep(
    model: keras.Model,
    dataset: Dataset,
    config: AttackExperimentConfig = AttackExperimentConfig(),
    *,
    strategy: tf.distribute.Strategy | None = None,
    callback: Callable | None = None,
    model_path: str | None = None,
) -> SweepReport:
    """Accuracy of ``model`` on the first ``config.num_images`` test images under every
    attack and eps, the gradient-sign image, and the example images at ``example_eps``.

    The report holds the sweep's table (``tfool.attacks.SweepResult.as_dict``), the mean
    top-class probability on the clean images (``clean_mean_confidence``), the data's name,
    source and class names, and (on MNIST only) Goodfellow et al.'s error rates.

    Args:
        model: The classifier (logits).
        dataset: Its data (the test split is attacked).
        config: The attacks, sizes, counts and the seed of the random attacks
            (``config.seed``, the one seed of the sweep).
        strategy: Optional ``tf.distribute`` strategy.
        callback: Called with every finished ``(method, eps)`` row of the sweep.
        model_path: Where the model came from (recorded in the report).

    Returns:
        A ``SweepReport``.

    Raises:
        ValueError: more test images asked for than the data has.
    """
    config.check_data(dataset)
    n = config.num_images or len(dataset.x_test)
    x, y = dataset.x_test[:n], dataset.y_test[:n]
    options = config.attack_options(y)
    result = attacks.sweep(
        model,
        x,
        y,
        config.eps_values,
        config.methods,
        **config.hyperparameters(),
        batch_size=config.batch_size,
        strategy=strategy,
        callback=callback,
        **options,
    )
    auto_step = "2.5 * eps / steps" if config.steps else "1/255 (Kurakin et al.)"
    clean = attacks.probabilities(model, x, strategy=strategy)
    report = dict(
        result.as_dict(),
        clean_mean_confidence=float(clean.max(-1).mean()),
        dataset=dataset.name,
        data_source=dataset.source,
        class_names=list(dataset.class_names),
        model_path=model_path,
        target_class=config.target_class,
        step_size=config.step_size or auto_step,
        gradient_sign_image=gradient_sign_image(model, x, config.example_eps, options, strategy),
    )
    if dataset.name == "mnist":  # the paper's numbers are for MNIST only
        report["goodfellow_fgsm_error_at_0_25"] = GOODFELLOW_ERRORS
    examples = _examples(model, x, y, clean, config, options, dataset.class_names, strategy)
    return SweepReport(result, report, examples, dataset.name, n)


@dataclasses.dataclass(frozen=True, eq=False)
class AttributionReport:
    """What ``attribute_test_and_fgsm`` found.

    Attributes:
        images: ``[2K, ...]`` test image, its FGSM image, test image, ...
        attributions: Per method, ``[2K, ...]`` attributions of the predicted class.
        titles: One title per image.
        report: The JSON-ready report (``attribution.json``).
        dataset_name: The data's name.
        eps: The FGSM size.
        num_test_images: ``K``.
        changed: FGSM images whose answer differs from their test image's.
    """

    images: np.ndarray
    attributions: dict
    titles: list
    report: dict
    dataset_name: str
    eps: float
    num_test_images: int
    changed: int


def attribute_test_and_fgsm(
    model: keras.Model,
    dataset: Dataset,
    config: AttackExperimentConfig = AttackExperimentConfig(),
    *,
    strategy: tf.distribute.Strategy | None = None,
    model_path: str | None = None,
) -> AttributionReport:
    """Every attribution method on correctly classified test images and their FGSM images
    (``config.example_eps``), each attributing the class the model predicts.

    Raises:
        ValueError: more test images asked for than the data has, or the model classifies
            none of the attacked test images correctly.
    """
    config.check_data(dataset)
    n = config.num_images or len(dataset.x_test)
    x, y = dataset.x_test[:n], dataset.y_test[:n]
    correct = np.flatnonzero(attacks.probabilities(model, x, strategy=strategy).argmax(-1) == y)
    if len(correct) == 0:
        raise ValueError(f"the model classifies none of the first {n} test images correctly")
    keep = correct[: config.attribute_num_images]
    options = config.attack_options(y[keep])
    eps = config.example_eps
    adv = attacks.fgsm(model, x[keep], eps, strategy=strategy, **options)
    images = np.stack([x[keep], adv], axis=1).reshape(-1, *x.shape[1:])  # test, FGSM, test, ...
    probs = attacks.probabilities(model, images, strategy=strategy)
    predicted = probs.argmax(-1)
    settings = attribution.AttributionConfig(methods=config.attribute_methods)
    attrs = attribution.attribute_all(model, images, predicted, strategy=strategy, config=settings)
    names = dataset.class_names
    titles = [
        f"test #{keep[i // 2]}, label {names[y[keep[i // 2]]]}\nanswer {answer}"
        if i % 2 == 0
        else f"FGSM, eps {eps:g}\nanswer {answer}"
        for i, answer in enumerate(answers(probs, names))
    ]
    rows = [
        dict(
            test_index=keep[i // 2],
            image="test" if i % 2 == 0 else "fgsm",
            label=y[keep[i // 2]],
            predicted=predicted[i],
            confidence=probs[i, predicted[i]],
        )
        for i in range(len(images))
    ]
    changed = int(np.sum(predicted[1::2] != predicted[0::2]))
    report = dict(
        dataset=dataset.name,
        class_names=list(names),
        model_path=model_path,
        eps=eps,
        attack=dict(method="fgsm", targeted=config.targeted, target_class=config.target_class),
        methods=list(attrs),
        attribution_target="predicted class",
        fgsm_changed_answer=changed,
        rows=rows,
    )
    return AttributionReport(images, attrs, titles, report, dataset.name, eps, len(keep), changed)


# ----------------------------------------------------------------------------------------
# ImageNet photos: FGSM and attributions on a real classifier
# ----------------------------------------------------------------------------------------

#: FGSM sizes on photos, in pixels of 0-255 (1/255 ... 8/255 in [0, 1] units).
PHOTO_EPS = (1.0, 2.0, 4.0, 8.0)
#: The attribution methods drawn for photos (occlusion and the noise tunnel cost tens of
#: passes more per image at 224x224 and are left to ``tfool.attribution``).
PHOTO_METHODS = ("saliency", "gradient_x_input", "integrated_gradients")
#: The photos of the photos mode: scikit-image sample photos.
PHOTOS = ("chelsea", "coffee", "camera", "motorcycle_left")


@dataclasses.dataclass(frozen=True)
class PhotoConfig:
    """FGSM and attributions on photos.

    Attributes:
        eps: FGSM sizes in pixels of 0-255, each in (0, 255].
        methods: Attribution methods (``tfool.attribution.ALL_METHODS`` names).
        ig_steps: Integrated-gradients path points (black baseline), >= 1.
        batch_size: Images (or path points) per compiled call.
    """

    eps: tuple[float, ...] = PHOTO_EPS
    methods: tuple[str, ...] = PHOTO_METHODS
    ig_steps: int = 32
    batch_size: int = 8

    def __post_init__(self):
        if not self.eps or not all(is_finite_number(e) and 0 < e <= 255 for e in self.eps):
            raise ValueError(f"eps={self.eps!r}; expected one or more pixel sizes in (0, 255]")
        if not self.methods:
            raise ValueError("methods is empty; expected attribution method names")
        self.attribution_config()  # refuses an unknown method
        for name in ("ig_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; expected an integer >= 1")

    def attribution_config(self) -> attribution.AttributionConfig:
        """The attribution settings: ``methods``, integrated gradients with ``ig_steps``
        points in internal batches of ``batch_size``."""
        ig = dict(n_steps=self.ig_steps, internal_batch_size=self.batch_size)
        options = {"integrated_gradients": ig} if "integrated_gradients" in self.methods else {}
        return attribution.AttributionConfig(methods=tuple(self.methods), options=options)


@dataclasses.dataclass(frozen=True)
class PhotoExperiment:
    """FGSM and attributions on photos with an ImageNet classifier (run_fgsm.py's photos
    mode).

    Attributes:
        model: The classifier (a ``tfool.imagenet.ModelSpec``).
        photos: PNG/JPEG paths or names of scikit-image sample photos (chelsea, coffee,
            camera, motorcycle_left, rocket...; need scikit-image).
        photo: The FGSM and attribution settings (a ``PhotoConfig``).
    """

    model: ModelSpec = ModelSpec()
    photos: tuple[str, ...] = PHOTOS
    photo: PhotoConfig = PhotoConfig()

    def __post_init__(self):
        object.__setattr__(self, "photos", tuple(self.photos))
        if not self.photos or not all(str(p).strip() for p in self.photos):
            raise ValueError(f"photos={self.photos!r} needs at least one photo")

    def photo_paths(self) -> tuple[str, ...]:
        """The photos' paths (sample photos' names resolved)."""
        return tuple(resolve_image(photo.strip()) for photo in self.photos)


@dataclasses.dataclass(frozen=True, eq=False)
class PhotoReport:
    """What ``photo_attacks`` found.

    Attributes:
        names: One name per photo.
        pixels: ``[P, H, W, 3]`` the photos, pixels 0-255.
        adversarial: ``{eps: [P, H, W, 3]}`` FGSM images, pixels 0-255.
        probabilities: ``{0.0 and every eps: [P, classes]}`` the model's probabilities.
        attribution_images: ``[2P, H, W, 3]`` in [0, 1]: photo, its FGSM image at the
            largest eps, photo, ...
        attributions: Per method, ``[2P, H, W, 3]`` attributions of each image's top class.
        titles: One title per attribution image.
        report: The JSON-ready report (``photos.json``).
        model_name: The classifier.
    """

    names: tuple[str, ...]
    pixels: np.ndarray
    adversarial: dict
    probabilities: dict
    attribution_images: np.ndarray
    attributions: dict
    titles: list
    report: dict
    model_name: str


def photo_attacks(
    model,
    photos: dict[str, np.ndarray],
    config: PhotoConfig = PhotoConfig(),
    *,
    strategy: tf.distribute.Strategy | None = None,
) -> PhotoReport:
    """Untargeted FGSM at every ``config.eps`` on photos, and attributions of the top class.

    FGSM moves each photo away from the class the model gives it (its own answer, so no
    label is needed); the attributions explain the top class of each photo and of its FGSM
    image at the largest eps, as the MNIST attribution figure does for test images.

    Args:
        model: A ``tfool.imagenet.ImagenetModel`` (pixels 0-255 in, logits out).
        photos: ``{name: [H, W, 3] pixels 0-255}`` at the model's input size.
        config: The settings.
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        A ``PhotoReport``.

    Raises:
        ValueError: no photos, or photos not of the model's input shape.
    """
    from tfool import imagenet

    if not photos:
        raise ValueError("photos is empty; expected {name: [H, W, 3] pixels}")
    names = tuple(photos)
    pixels = np.stack([np.asarray(photos[n], np.float32) for n in names])
    if pixels.shape[1:] != model.image_shape:
        raise ValueError(f"photos have shape {pixels.shape[1:]}, expected {model.image_shape}")
    unit = imagenet.unit_pixel_model(model)  # [0, 1] images -> logits
    x = pixels / 255.0
    options = dict(batch_size=config.batch_size, strategy=strategy)
    probs = {0.0: attacks.probabilities(unit, x, **options)}
    clean = probs[0.0].argmax(-1)
    adversarial = {}
    for eps in config.eps:
        adv = attacks.fgsm(unit, x, eps / 255.0, y=clean, **options)
        adversarial[eps] = adv * 255.0
        probs[eps] = attacks.probabilities(unit, adv, **options)
    top = max(config.eps)
    images = np.stack([x, adversarial[top] / 255.0], axis=1).reshape(-1, *x.shape[1:])
    pair_probs = np.stack([probs[0.0], probs[top]], axis=1).reshape(-1, probs[0.0].shape[-1])
    predicted = pair_probs.argmax(-1)  # photo, its FGSM image, photo, ...
    settings = config.attribution_config()
    attrs = attribution.attribute_all(unit, images, predicted, strategy=strategy, config=settings)
    class_names = model.class_names
    heads = [head for name in names for head in (name, f"FGSM, eps {top:g}/255")]
    titles = [f"{h}\n{a}" for h, a in zip(heads, answers(pair_probs, class_names), strict=True)]
    rows = _photo_rows(names, pixels, adversarial, probs, config.eps, class_names)
    report = dict(
        model=model.name,
        weights=model.weights,
        input_size=model.input_size,
        attack=dict(method="fgsm", untargeted_from="the model's own top-1 class"),
        eps_pixels=list(config.eps),
        attribution_methods=list(attrs),
        attribution_target="each image's top class",
        integrated_gradients=dict(baseline="black", n_steps=config.ig_steps),
        photos=rows,
    )
    return PhotoReport(names, pixels, adversarial, probs, images, attrs, titles, report, model.name)


def _photo_rows(names, pixels, adversarial, probs, eps_values, class_names) -> list[dict]:
    """One report row per photo: its top 5 and what FGSM did to it at every eps."""
    from tfool import imagenet

    def top5(row):
        return [p._asdict() for p in imagenet.decode_predictions(row, 5, class_names)[0]]

    clean = probs[0.0].argmax(-1)
    rows = []
    for k, name in enumerate(names):
        attacked = []
        for eps in eps_values:
            p = probs[eps][k]
            attacked.append(
                dict(
                    eps_pixels=eps,
                    top1=class_names[int(p.argmax())],
                    top1_probability=float(p.max()),
                    clean_class_probability=float(p[clean[k]]),
                    changed=bool(p.argmax() != clean[k]),
                    linf_pixels=float(np.abs(adversarial[eps][k] - pixels[k]).max()),
                    l2_pixels=float(np.linalg.norm(adversarial[eps][k] - pixels[k])),
                    top5=top5(p),
                )
            )
        rows.append(dict(photo=name, top5=top5(probs[0.0][k]), fgsm=attacked))
    return rows
