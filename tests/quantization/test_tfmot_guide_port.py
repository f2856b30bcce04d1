"""tfmot's QAT comprehensive guide, ported cell by cell.

Written as a tfmot user following docs/porting_from_tfmot.md would write
it: the guide's cells (`training_comprehensive_guide`) with the import
changes of the first table and the Keras 3 changes of the second, then a
`tf.train.Checkpoint` round trip and a `keras.callbacks.BackupAndRestore`
resume of the ported QAT model (custom training loops and fault-tolerant
training restore through these).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from qat_helpers import tensor_types

import keras_tflq as tflq

# tfmot: `quantize_annotate_layer = tfmot.quantization.keras.…` etc.
quantize_model = tflq.quantize_model
quantize_annotate_layer = tflq.quantize_annotate_layer
quantize_annotate_model = tflq.quantize_annotate_model
quantize_apply = tflq.quantize_apply
LastValueQuantizer = tflq.quantizers.LastValueQuantizer
MovingAverageQuantizer = tflq.quantizers.MovingAverageQuantizer

# The guide's data: random inputs, one-hot targets (64 samples, not 1).
input_shape = [20]
rng = np.random.default_rng(0)
x_train = rng.normal(size=(64, 20)).astype(np.float32)
y_train = keras.utils.to_categorical(rng.integers(0, 20, 64), num_classes=20)


def setup_model():
    # Keras 3: `keras.Input` instead of `Dense(20, input_shape=input_shape)`.
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Dense(20),
            keras.layers.Flatten(),
        ]
    )


def setup_pretrained_weights(folder):
    model = setup_model()
    model.compile(loss=LOSS, optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, verbose=0)
    # Keras 3: weights files end in `.weights.h5` (tfmot used `.tf`).
    pretrained_weights = str(folder / "pretrained.weights.h5")
    model.save_weights(pretrained_weights)
    return pretrained_weights


def setup_pretrained_model(folder):
    model = setup_model()
    model.load_weights(setup_pretrained_weights(folder))
    return model


# The guide compiles its linear Dense output with a probability loss,
# which divides by the sum of the outputs: when that sum comes near zero
# (the quantized outputs make it likelier), the loss is NaN. Logits it is.
LOSS = keras.losses.CategoricalCrossentropy(from_logits=True)


def _compile_and_fit(model, epochs=1, **kwargs):
    model.compile(optimizer="adam", loss=LOSS, metrics=["accuracy"])
    return model.fit(x_train, y_train, epochs=epochs, verbose=0, **kwargs)


# The guide's custom classes. `quantize_scope` becomes registration.


@keras.saving.register_keras_serializable(package="tfmot_guide_port")
class DefaultDenseQuantizeConfig(tflq.QuantizeConfig):
    def get_weights_and_quantizers(self, layer):
        return [
            (
                layer.kernel,
                LastValueQuantizer(
                    num_bits=8, symmetric=True, narrow_range=False,
                    per_axis=False,
                ),
            )
        ]

    def get_activations_and_quantizers(self, layer):
        return [
            (
                layer.activation,
                MovingAverageQuantizer(
                    num_bits=8, symmetric=False, narrow_range=False,
                    per_axis=False,
                ),
            )
        ]

    def set_quantize_weights(self, layer, quantize_weights):
        layer.kernel = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="tfmot_guide_port")
class CustomLayer(keras.layers.Dense):
    pass


@keras.saving.register_keras_serializable(package="tfmot_guide_port")
class FourBitDenseQuantizeConfig(DefaultDenseQuantizeConfig):
    # "Modify quantization parameters": a 4-bit kernel.
    def get_weights_and_quantizers(self, layer):
        return [
            (
                layer.kernel,
                LastValueQuantizer(
                    num_bits=4, symmetric=True, narrow_range=False,
                    per_axis=False,
                ),
            )
        ]


@keras.saving.register_keras_serializable(package="tfmot_guide_port")
class NoActivationDenseQuantizeConfig(DefaultDenseQuantizeConfig):
    # "Modify parts of the layer to quantize": no activation quantizer.
    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_activations(self, layer, quantize_activations):
        return


class FixedRangeQuantizer(tflq.quantizers.Quantizer):
    """The guide's "custom quantization algorithm": clip to [-1, range]."""

    def build(self, tensor_shape, name, layer):
        # Keras 3: `name=` is a keyword argument of `add_weight`.
        range_var = layer.add_weight(
            name=name + "_range",
            shape=(),
            initializer=keras.initializers.Constant(6.0),
            trainable=False,
        )
        return {"range_var": range_var}

    def __call__(self, inputs, training, weights, **kwargs):
        # Keras 3: `keras.ops.clip`, not `tf.keras.backend.clip`.
        return keras.ops.clip(inputs, -1.0, weights["range_var"])

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="tfmot_guide_port")
class FixedRangeDenseQuantizeConfig(DefaultDenseQuantizeConfig):
    def get_weights_and_quantizers(self, layer):
        return [(layer.kernel, FixedRangeQuantizer())]


def test_quantize_whole_model(tmp_path):
    base_model = setup_pretrained_model(tmp_path)
    quant_aware_model = quantize_model(base_model)
    quant_aware_model.summary(print_fn=lambda *args, **kwargs: None)
    _compile_and_fit(quant_aware_model)
    assert tflq.quantization.is_quantized_model(quant_aware_model)


def test_quantize_some_layers_with_clone_model():
    base_model = setup_model()

    def apply_quantization_to_dense(layer):
        if isinstance(layer, keras.layers.Dense):
            return quantize_annotate_layer(layer)
        return layer

    annotated_model = keras.models.clone_model(
        base_model, clone_function=apply_quantization_to_dense
    )
    quant_aware_model = quantize_apply(annotated_model)
    assert [type(layer).__name__ for layer in quant_aware_model.layers] == [
        "InputLayer",
        "QuantizeWrapper",  # the model input
        "QuantizeWrapper",  # the Dense
        "Flatten",
    ]


def test_annotate_in_functional_and_sequential_code():
    i = keras.Input(shape=(20,))
    x = quantize_annotate_layer(keras.layers.Dense(10))(i)
    o = keras.layers.Flatten()(x)
    functional = quantize_apply(keras.Model(inputs=i, outputs=o))

    sequential = quantize_apply(
        keras.Sequential(
            [
                keras.Input(input_shape),
                quantize_annotate_layer(keras.layers.Dense(20)),
                keras.layers.Flatten(),
            ]
        )
    )
    for model in (functional, sequential):
        assert tflq.quantization.is_quantized_model(model)


def test_save_and_load_without_a_scope(tmp_path):
    quant_aware_model = quantize_model(setup_model())
    quant_aware_model(x_train, training=True)
    # Keras 3: `.keras` and plain `load_model` (no `quantize_scope`).
    keras_model_file = str(tmp_path / "qat.keras")
    quant_aware_model.save(keras_model_file)
    loaded_model = keras.models.load_model(keras_model_file)
    np.testing.assert_array_equal(
        loaded_model.predict(x_train, verbose=0),
        quant_aware_model.predict(x_train, verbose=0),
    )


def test_convert_to_an_integer_tflite_model():
    quant_aware_model = quantize_model(setup_model())
    _compile_and_fit(quant_aware_model)
    converter = tf.lite.TFLiteConverter.from_keras_model(quant_aware_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    quantized_tflite_model = converter.convert()
    types = set(tensor_types(quantized_tflite_model).values())
    # Float I/O as in the guide; everything in between integer.
    assert {"int8", "int32"} <= types <= {"int8", "int32", "float32"}


CONFIGS = {
    "default_dense": DefaultDenseQuantizeConfig,
    "custom_layer": DefaultDenseQuantizeConfig,
    "four_bit_kernel": FourBitDenseQuantizeConfig,
    "no_activation_quantizer": NoActivationDenseQuantizeConfig,
    "fixed_range_quantizer": FixedRangeDenseQuantizeConfig,
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_experiment_with_quantize_configs(config, request):
    keras.utils.set_random_seed(0)
    custom = "custom_layer" in request.node.name
    layer_class = CustomLayer if custom else keras.layers.Dense
    model = quantize_annotate_model(
        keras.Sequential(
            [
                keras.Input((20,)),
                quantize_annotate_layer(layer_class(20), config()),
                keras.layers.Flatten(),
            ]
        )
    )
    quant_aware_model = quantize_apply(model)
    history = _compile_and_fit(quant_aware_model)
    assert np.isfinite(history.history["loss"][-1])


def test_unported_keras_backend_call_fails_at_the_first_fit():
    # The guide's FixedRangeQuantizer as written for tf_keras: apply
    # succeeds, the first training step fails (the porting table's row).
    class KerasTwoQuantizer(FixedRangeQuantizer):
        def __call__(self, inputs, training, weights, **kwargs):
            return keras.backend.clip(inputs, -1.0, weights["range_var"])

    class Config(DefaultDenseQuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return [(layer.kernel, KerasTwoQuantizer())]

    quant_aware_model = quantize_apply(
        keras.Sequential(
            [
                keras.Input((20,)),
                quantize_annotate_layer(keras.layers.Dense(20), Config()),
            ]
        )
    )
    with pytest.raises(AttributeError, match="keras.backend.* no attribute"):
        _compile_and_fit(quant_aware_model)


def _trained_guide_model(folder, seed):
    keras.utils.set_random_seed(seed)
    quant_aware_model = quantize_model(setup_pretrained_model(folder))
    _compile_and_fit(quant_aware_model, epochs=2)
    return quant_aware_model


def _assert_same_variables(restored, expected):
    assert len(restored.variables) == len(expected)
    for variable, value in zip(restored.variables, expected, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value, variable.path)


def test_checkpoint_round_trip_restores_the_ranges(tmp_path):
    quant_aware_model = _trained_guide_model(tmp_path, seed=0)
    checkpoint = tf.train.Checkpoint(model=quant_aware_model)
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path / "ckpt"), 3)
    path = manager.save()

    keras.utils.set_random_seed(1)
    restored = quantize_model(setup_model())
    status = tf.train.Checkpoint(model=restored).restore(path)
    status.assert_existing_objects_matched().expect_partial()
    _assert_same_variables(
        restored, [v.numpy() for v in quant_aware_model.variables]
    )
    np.testing.assert_array_equal(
        restored.predict(x_train, verbose=0),
        quant_aware_model.predict(x_train, verbose=0),
    )


class _Interrupt(keras.callbacks.Callback):
    """Records the model's variables at the end of epoch 0, then stops
    the run at the start of epoch 1, as a preempted worker would."""

    def on_epoch_end(self, epoch, logs=None):
        self.values = [v.numpy() for v in self.model.variables]

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("preempted")


class _Restored(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.values = [v.numpy() for v in self.model.variables]


def test_backup_and_restore_resumes_with_the_ranges(tmp_path):
    backup_dir = str(tmp_path / "backup")
    keras.utils.set_random_seed(0)
    quant_aware_model = quantize_model(setup_pretrained_model(tmp_path))
    interrupt = _Interrupt()
    with pytest.raises(RuntimeError, match="preempted"):
        _compile_and_fit(
            quant_aware_model,
            epochs=2,
            callbacks=[keras.callbacks.BackupAndRestore(backup_dir), interrupt],
        )

    # A fresh process would rebuild the same model and call fit() again.
    keras.utils.set_random_seed(1)
    resumed = quantize_model(setup_model())
    initial = [v.numpy() for v in resumed.variables]
    restored = _Restored()
    history = _compile_and_fit(
        resumed,
        epochs=2,
        callbacks=[keras.callbacks.BackupAndRestore(backup_dir), restored],
    )
    assert history.epoch == [1]  # resumed after the backed-up epoch
    moved = [
        v.path
        for v, before, after in zip(
            resumed.variables, initial, restored.values, strict=True
        )
        if v.path.endswith(("_min", "_max", "_initialized"))
        and not np.array_equal(before, after)
    ]
    assert len(moved) == 8, moved  # every range of the input and the Dense
    for variable, value, expected in zip(
        resumed.variables, restored.values, interrupt.values, strict=True
    ):
        np.testing.assert_array_equal(value, expected, variable.path)
