"""Every keras.applications family as a keras-zoo plugin: a corpus of real architectures that no
one in this repository wrote, for ``scripts/conformance.py`` and ``tests/test_applications.py``.

Each builder wraps the smallest variant of one family (``weights=None``: nothing is downloaded),
at the narrowest width Keras publishes weights for where the family has a width, the way a user
wraps a backbone for transfer learning: the zoo's input (float32 in [0, 1], any height and width,
1 or 3 channels) is resized up to the smallest size the family accepts, tiled to 3 channels and
brought to the range the family expects; then the backbone as a nested functional model
(``include_top=False, pooling="avg"``) and a softmax head.

One explicit ``def`` per family, all calling :func:`_wrap`: the registry reads a builder's
signature (keyword-only ``input_shape`` / ``num_classes``, typed hyperparameters) and ``zoo list``
reads its docstring from the source without importing it, so generated functions would have had
to forge both.
"""

from __future__ import annotations

import keras
from keras import applications, layers

# [0, 1] -> what the family's preprocess_input produces from [0, 255]:
#   "tf"       [-1, 1] (MobileNet V1/V2, ResNetV2, Xception, Inception, NASNet)
#   "torch"    ImageNet mean and standard deviation, RGB (DenseNet)
#   "caffe"    ImageNet mean subtracted from [0, 255] (ResNet, VGG); Caffe's RGB -> BGR swap is
#              left out: it matters only to ImageNet weights, which these models never load
#              (a permutation of the first convolution's random input channels)
#   "included" [0, 255], for the families that preprocess inside (include_preprocessing, or
#              EfficientNet V1's own Rescaling + Normalization)
_MEAN_RGB = (0.485, 0.456, 0.406)
_STD_RGB = (0.229, 0.224, 0.225)
_CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


def _preprocess(x, mode: str):
    if mode == "tf":
        return layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(x)
    if mode == "torch":
        return layers.Normalization(mean=_MEAN_RGB, variance=[s * s for s in _STD_RGB], name="imagenet_norm")(x)
    if mode == "caffe":
        return layers.Normalization(
            mean=[m / 255.0 for m in _CAFFE_MEAN_RGB], variance=[(1 / 255.0) ** 2] * 3, name="caffe_mean"
        )(x)
    if mode == "included":
        return layers.Rescaling(255.0, name="to_0_255")(x)
    raise ValueError(f"unknown preprocessing mode {mode!r}")


def _wrap(
    family,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    min_size: int = 32,
    mode: str,
    name: str,
    **backbone_kwargs,
) -> keras.Model:
    """Input -> resize up to ``min_size`` -> 3 channels -> the family's range -> backbone -> softmax."""
    if len(input_shape) != 3:
        raise ValueError(f"{name} takes images (height, width, channels), received input_shape={input_shape}")
    height, width, channels = input_shape
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    size = (max(height, min_size), max(width, min_size))
    if size != (height, width):
        x = layers.Resizing(*size, interpolation="bilinear", name="resize")(x)
    if channels == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    elif channels != 3:
        x = layers.Conv2D(3, 1, name="to_rgb")(x)
    x = _preprocess(x, mode)
    backbone = family(
        input_shape=(*size, 3), weights=None, include_top=False, pooling="avg", **backbone_kwargs
    )
    x = backbone(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet50(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """ResNet50 (keras.applications.ResNet50, weights=None), 32x32 and up, Caffe-style input."""
    return _wrap(applications.ResNet50, input_shape=input_shape, num_classes=num_classes, mode="caffe", name="resnet50")


def resnet50v2(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """ResNet50V2 (keras.applications.ResNet50V2, weights=None), 32x32 and up, input in [-1, 1]."""
    return _wrap(applications.ResNet50V2, input_shape=input_shape, num_classes=num_classes, mode="tf", name="resnet50v2")


def vgg16(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """VGG16 (keras.applications.VGG16, weights=None), 32x32 and up, Caffe-style input."""
    return _wrap(applications.VGG16, input_shape=input_shape, num_classes=num_classes, mode="caffe", name="vgg16")


def vgg19(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """VGG19 (keras.applications.VGG19, weights=None), 32x32 and up, Caffe-style input."""
    return _wrap(applications.VGG19, input_shape=input_shape, num_classes=num_classes, mode="caffe", name="vgg19")


def densenet121(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """DenseNet121 (keras.applications.DenseNet121, weights=None), 32x32 and up, ImageNet-normalised."""
    return _wrap(applications.DenseNet121, input_shape=input_shape, num_classes=num_classes, mode="torch", name="densenet121")


def mobilenet(*, input_shape: tuple[int, ...], num_classes: int, alpha: float = 0.25) -> keras.Model:
    """MobileNet V1 (keras.applications.MobileNet, weights=None), width alpha, 32x32 and up."""
    return _wrap(applications.MobileNet, input_shape=input_shape, num_classes=num_classes, mode="tf",
                 name="mobilenet", alpha=alpha)


def mobilenetv2(*, input_shape: tuple[int, ...], num_classes: int, alpha: float = 0.35) -> keras.Model:
    """MobileNetV2 (keras.applications.MobileNetV2, weights=None), width alpha, 32x32 and up."""
    return _wrap(applications.MobileNetV2, input_shape=input_shape, num_classes=num_classes, mode="tf",
                 name="mobilenetv2", alpha=alpha)


def mobilenetv3small(
    *, input_shape: tuple[int, ...], num_classes: int, alpha: float = 0.75, minimalistic: bool = False
) -> keras.Model:
    """MobileNetV3Small (keras.applications, weights=None), its own preprocessing, 32x32 and up."""
    return _wrap(applications.MobileNetV3Small, input_shape=input_shape, num_classes=num_classes,
                 mode="included", name="mobilenetv3small", alpha=alpha, minimalistic=minimalistic,
                 include_preprocessing=True)


def efficientnetb0(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """EfficientNetB0 (keras.applications, weights=None), its own preprocessing, 32x32 and up."""
    return _wrap(applications.EfficientNetB0, input_shape=input_shape, num_classes=num_classes,
                 mode="included", name="efficientnetb0")


def efficientnetv2b0(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """EfficientNetV2B0 (keras.applications, weights=None), its own preprocessing, 32x32 and up."""
    return _wrap(applications.EfficientNetV2B0, input_shape=input_shape, num_classes=num_classes,
                 mode="included", name="efficientnetv2b0", include_preprocessing=True)


def convnextmicro(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """ConvNeXt at one block per stage and 16-128 channels (Keras' own ConvNeXt function, its
    LayerScale layer; weights=None): the custom-layer family at a size the test suite can afford."""
    from keras.src.applications.convnext import ConvNeXt  # the variants' common builder

    def family(**kwargs):
        return ConvNeXt(depths=[1, 1, 1, 1], projection_dims=[16, 32, 64, 128], name="convnext_micro", **kwargs)

    return _wrap(family, input_shape=input_shape, num_classes=num_classes, mode="included",
                 name="convnextmicro", include_preprocessing=True)


def convnexttiny(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """ConvNeXtTiny (keras.applications, weights=None; Keras' own LayerScale layer), 32x32 and up."""
    return _wrap(applications.ConvNeXtTiny, input_shape=input_shape, num_classes=num_classes,
                 mode="included", name="convnexttiny", include_preprocessing=True)


def xception(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Xception (keras.applications.Xception, weights=None), resized up to 71x71, input in [-1, 1]."""
    return _wrap(applications.Xception, input_shape=input_shape, num_classes=num_classes, min_size=71,
                 mode="tf", name="xception")


def inceptionv3(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """InceptionV3 (keras.applications.InceptionV3, weights=None), resized up to 75x75, in [-1, 1]."""
    return _wrap(applications.InceptionV3, input_shape=input_shape, num_classes=num_classes, min_size=75,
                 mode="tf", name="inceptionv3")


def inceptionresnetv2(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """InceptionResNetV2 (keras.applications, weights=None), resized up to 75x75, in [-1, 1]."""
    return _wrap(applications.InceptionResNetV2, input_shape=input_shape, num_classes=num_classes,
                 min_size=75, mode="tf", name="inceptionresnetv2")


def nasnetmobile(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """NASNetMobile (keras.applications.NASNetMobile, weights=None), 32x32 and up, in [-1, 1]."""
    return _wrap(applications.NASNetMobile, input_shape=input_shape, num_classes=num_classes,
                 mode="tf", name="nasnetmobile")
