"""The quantizer contract, and the range machinery the quantizers share.

A quantizer owns no state itself: `build()` creates its range variables on the
layer that uses it and returns them in a dict, and `__call__()` fake-quantizes
a tensor with them. This is the contract of
`tfmot.quantization.keras.quantizers.Quantizer`, so a tfmot user ports a
quantizer or a `QuantizeConfig` by changing imports only. The public
quantizers are in `keras_tflq.quantizers`.
"""

import abc

import keras
from keras import ops

from keras_tflq.argument_checks import check_bool
from keras_tflq.argument_checks import check_one_of
from keras_tflq.argument_checks import check_positive_int
from keras_tflq.quantization import replicas
from keras_tflq.quantization.fake_quant import fake_quant

# The bit widths a quantizer takes (fake_quant_with_min_max_vars' limits).
NUM_BITS = tuple(range(2, 17))


# Graph ops whose outputs are never negative, and ops that pass values on.
_NON_NEGATIVE_OPS = frozenset({"Relu", "Relu6"})
_PASS_THROUGH_OPS = frozenset({"Identity", "StopGradient"})


def _non_negative(x):
    """Whether the traced tensor `x` comes from a ReLU (so its minimum is
    at least 0). `False` when not known, such as in eager execution."""
    op = getattr(x, "op", None) if hasattr(x, "graph") else None
    for _ in range(4):
        if op is None:
            return False
        if op.type in _NON_NEGATIVE_OPS:
            return True
        if op.type not in _PASS_THROUGH_OPS or not op.inputs:
            return False
        op = op.inputs[0].op
    return False


class Quantizer(abc.ABC):
    """Base class of the quantizers used by a `QuantizeConfig`.

    Subclasses implement `build()` (create the variables the quantizer needs
    on the layer that owns it), `__call__()` (fake-quantize a tensor) and
    `get_config()`.
    """

    @abc.abstractmethod
    def build(self, tensor_shape, name, layer):
        """Creates the quantizer's variables on `layer`.

        Args:
            tensor_shape: shape of the tensor this quantizer quantizes.
            name: prefix for the variable names.
            layer: the layer that owns the variables (`layer.add_weight`).

        Returns:
            A dict of the created variables, passed back to `__call__()`.
        """

    @abc.abstractmethod
    def __call__(self, inputs, training, weights, **kwargs):
        """Fake-quantizes `inputs`.

        Args:
            inputs: the float tensor to quantize.
            training: whether the call is a training step (ranges update).
            weights: the dict returned by `build()`.
            **kwargs: `ranges_frozen` (a boolean tensor, or a Python bool
                when it is known when the step is traced) keeps the stored
                range in training; other keys are ignored, as in tfmot.

        Returns:
            The fake-quantized tensor.
        """

    @abc.abstractmethod
    def get_config(self):
        """Returns the constructor arguments as a dict."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == (
            other.get_config()
        )

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        # Equal quantizers (same class and config) hash alike.
        config = sorted(self.get_config().items())
        return hash((type(self), repr(config)))


def build_quantizer(quantizer, tensor_shape, name, layer):
    """`quantizer.build(tensor_shape, name, layer)`, its variables tracked.

    Every layer that owns quantizers builds them through this function.
    `build()` returns its variables in a dict, which TensorFlow's object
    graph does not see: each variable is also set as an attribute of
    `layer` (`_quantizer_<name>_<key>`), so `tf.train.Checkpoint` saves
    and restores the ranges. The layer's variable list, and with it the
    `.keras` format, is unchanged.

    Args:
        quantizer: a `Quantizer`.
        tensor_shape: shape of the tensor it quantizes.
        name: prefix for the variable names (unique in `layer`).
        layer: the layer that owns the variables.

    Returns:
        The dict returned by `quantizer.build()`.
    """
    weights = quantizer.build(tensor_shape, name, layer)
    for key, variable in (weights or {}).items():
        if not isinstance(variable, keras.Variable):
            continue
        attribute = f"_quantizer_{name}_{key}"
        suffix = 1
        while getattr(layer, attribute, variable) is not variable:
            attribute = f"_quantizer_{name}_{key}_{suffix}"
            suffix += 1
        setattr(layer, attribute, variable)
    return weights


class RangeQuantizer(Quantizer):
    """Shared machinery of the min/max range quantizers (not exported).

    A subclass implements `_updated_range()` and sets `_accumulates` when
    its range depends on the steps before.

    Args:
        num_bits: bit width of the quantized values, 2 to 16.
        per_axis: one range per slice along `axis` (per channel) instead
            of one for the whole tensor.
        symmetric: range symmetric around zero (`[-m, m]`), as TFLite
            requires for int8 weights and int16 activations.
        narrow_range: use `[1, 2**num_bits - 1]` instead of
            `[0, 2**num_bits - 1]` (the int8 weight range `[-127, 127]`).
        axis: the channel axis when `per_axis=True`. Defaults to `-1`
            (tfmot always uses the last axis).
    """

    def __init__(self, num_bits, per_axis, symmetric, narrow_range, axis=-1):
        owner = type(self).__name__
        check_positive_int("num_bits", num_bits, owner)
        check_one_of("num_bits", num_bits, NUM_BITS, owner)
        check_bool("per_axis", per_axis, owner)
        check_bool("symmetric", symmetric, owner)
        check_bool("narrow_range", narrow_range, owner)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(
                f"Expected `axis` to be an int for {owner}. "
                f"Received: axis={axis!r}"
            )
        self.num_bits = num_bits
        self.per_axis = per_axis
        self.symmetric = symmetric
        self.narrow_range = narrow_range
        self.axis = axis

    def _range_shape(self, tensor_shape):
        if not self.per_axis:
            return ()
        if tensor_shape is None or tensor_shape[self.axis] is None:
            raise ValueError(
                f"Expected a known size along axis {self.axis} for a "
                f"per-axis {type(self).__name__}. "
                f"Received: tensor_shape={tensor_shape}"
            )
        return (tensor_shape[self.axis],)

    # Whether the range accumulates over steps (and so must know the first).
    _accumulates = False

    def build(self, tensor_shape, name, layer):
        shape = self._range_shape(tensor_shape)
        weights = {
            "min_var": layer.add_weight(
                name=f"{name}_min",
                shape=shape,
                initializer=keras.initializers.Constant(-6.0),
                trainable=False,
            ),
            "max_var": layer.add_weight(
                name=f"{name}_max",
                shape=shape,
                initializer=keras.initializers.Constant(6.0),
                trainable=False,
            ),
        }
        if self._accumulates:
            weights["initialized"] = layer.add_weight(
                name=f"{name}_initialized",
                shape=(),
                initializer="zeros",
                trainable=False,
            )
        return weights

    def _reduce_axes(self, x):
        """The axes a range reduces over (all but `axis` when per-axis)."""
        if not self.per_axis:
            return None
        axis = self.axis % len(x.shape)
        return tuple(i for i in range(len(x.shape)) if i != axis)

    def _batch_range(self, x):
        """The range of `x` (per channel when `per_axis`), containing zero,
        symmetric if asked, and at least 1e-6 wide. The minimum is the
        Python float `0.0` when `x` comes from a ReLU (one range)."""
        reduce_axes = self._reduce_axes(x)
        if self.symmetric:
            return self.magnitude_range(ops.abs(x))
        range_max = ops.maximum(ops.max(x, axis=reduce_axes), 1e-6)
        if _non_negative(x):
            # min(min(x), 0) is 0: one pass over the tensor less, and a
            # Python 0.0 lets the range update skip its arithmetic.
            if self.per_axis:
                return ops.zeros_like(range_max), range_max
            return 0.0, range_max
        range_min = ops.minimum(ops.min(x, axis=reduce_axes), 0.0)
        return range_min, range_max

    def magnitude_range(self, magnitudes):
        """`(-bound, bound)`: the symmetric range of a tensor whose
        absolute values are `magnitudes` (per channel when `per_axis`), at
        least 1e-6 wide."""
        bound = ops.max(magnitudes, axis=self._reduce_axes(magnitudes))
        bound = ops.maximum(bound, 1e-6)
        return -bound, bound

    @abc.abstractmethod
    def _updated_range(self, batch_min, batch_max, weights):
        """The new range in a training step, given the batch range."""

    def _mark_seen(self, weights):
        """Records that a training step ran (accumulating quantizers)."""
        if self._accumulates:
            weights["initialized"].assign(1.0)

    def compute_range(self, inputs, training, weights, ranges_frozen=None):
        """The range `__call__` quantizes `inputs` with, as `(min, max)`.

        In training, the range is updated from `inputs` and stored, unless
        `ranges_frozen` (as in `__call__`); it is a statistic of the
        values: no gradient flows into it. At inference, the stored range.
        """
        min_var, max_var = weights["min_var"], weights["max_var"]
        if not training or ranges_frozen is True:
            if training:
                self._mark_seen(weights)
            return min_var, max_var
        values = ops.stop_gradient(ops.convert_to_tensor(inputs))
        return self.update_range(
            *self._batch_range(values), weights, ranges_frozen
        )

    def update_range(self, batch_min, batch_max, weights, ranges_frozen=None):
        """Updates the stored range from a batch's range (over every
        replica) and returns it, as `compute_range` does in training.

        `batch_min` may be the Python float `0.0`: the batch is known to
        be non-negative (a ReLU's output).
        """
        min_var, max_var = weights["min_var"], weights["max_var"]
        if isinstance(batch_min, float):
            _, batch_max = replicas.global_range(
                ops.zeros_like(batch_max), batch_max
            )
        else:
            batch_min, batch_max = replicas.global_range(batch_min, batch_max)
        new_min, new_max = self._updated_range(batch_min, batch_max, weights)
        if ranges_frozen is not None and ranges_frozen is not False:
            new_min = ops.where(ranges_frozen, min_var, new_min)
            new_max = ops.where(ranges_frozen, max_var, new_max)
        min_var.assign(new_min)
        max_var.assign(new_max)
        return new_min, new_max

    def __call__(self, inputs, training, weights, **kwargs):
        # `ranges_frozen`: a boolean tensor, or a Python bool when it is
        # known when the step is traced. Frozen by a QuantizationSchedule:
        # keep the learned range.
        range_min, range_max = self.compute_range(
            inputs, training, weights, kwargs.get("ranges_frozen")
        )
        return fake_quant(
            inputs,
            range_min,
            range_max,
            num_bits=self.num_bits,
            narrow_range=self.narrow_range,
            axis=self.axis if self.per_axis else None,
            training=bool(training),
            symmetric=self.symmetric,
        )

    def get_config(self):
        config = {
            "num_bits": self.num_bits,
            "per_axis": self.per_axis,
            "symmetric": self.symmetric,
            "narrow_range": self.narrow_range,
        }
        if self.axis != -1:
            config["axis"] = self.axis
        return config
