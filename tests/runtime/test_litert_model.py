import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from keras_tflq.runtime.litert_model import LiteRTModel
from tests.helpers.tiny_models import CALIBRATION_SEED
from tests.helpers.tiny_models import MODES
from tests.helpers.tiny_models import random_inputs

INPUT_DTYPES = {
    "float32": np.float32,
    "float16": np.float32,
    "dynamic": np.float32,
    "int8": np.int8,
    "int8_uint8_io": np.uint8,
    "int16x8": np.float32,
}


def _max_error(mode_id, details, reference):
    """The largest expected |LiteRT - Keras| for one output."""
    if mode_id == "float32":
        return 1e-5 + 1e-5 * np.abs(reference).max()
    if mode_id == "dynamic":
        return 5e-2 * np.abs(reference).max()
    if mode_id == "float16":
        return 1e-2 * np.abs(reference).max()
    if mode_id == "int16x8":
        return 2e-2 * np.abs(reference).max()
    return 4 * details["quantization"]["scale"]


def _as_list(outputs):
    return outputs if isinstance(outputs, list) else [outputs]


@pytest.mark.parametrize("mode_id", list(MODES), ids=list(MODES))
@pytest.mark.parametrize(
    "name", ["dense", "conv", "two_inputs", "many_outputs"]
)
def test_predict_matches_keras(tflite_content, name, mode_id):
    model, content = tflite_content(name, mode_id)
    litert_model = LiteRTModel(model_content=content)
    x = random_inputs(model, 40, seed=CALIBRATION_SEED)
    x = x if len(x) > 1 else x[0]
    expected = _as_list(model.predict(x, verbose=0))
    actual = _as_list(litert_model.predict(x, batch_size=16))
    assert len(actual) == len(expected)
    for got, want, details in zip(
        actual, expected, litert_model.output_details, strict=False
    ):
        assert got.dtype == np.float32
        assert got.shape == want.shape
        error = np.abs(got - want).max()
        assert error <= _max_error(mode_id, details, want), error
        if want.shape[-1] > 1:
            agreement = np.mean(got.argmax(-1) == want.argmax(-1))
            assert agreement >= 0.9


@pytest.mark.parametrize("mode_id", list(MODES), ids=list(MODES))
def test_details_report_io_dtypes_and_quantization(tflite_content, mode_id):
    _, content = tflite_content("dense", mode_id)
    litert_model = LiteRTModel(model_content=content)
    (inp,) = litert_model.input_details
    (out,) = litert_model.output_details
    assert inp["dtype"] == INPUT_DTYPES[mode_id]
    assert out["dtype"] == INPUT_DTYPES[mode_id]
    assert inp["shape"] == (None, 32)
    assert out["shape"] == (None, 5)
    quantized = mode_id in ("int8", "int8_uint8_io")
    assert (inp["quantization"]["scale"] > 0) == quantized
    assert (out["quantization"]["scale"] > 0) == quantized


@pytest.mark.parametrize("mode_id", list(MODES), ids=list(MODES))
@pytest.mark.parametrize("batch_size", [1, 7, 32], ids=["b1", "b7", "b32"])
def test_predict_on_batch_resizes_to_the_batch(
    tflite_content, mode_id, batch_size
):
    model, content = tflite_content("conv", mode_id)
    litert_model = LiteRTModel(model_content=content)
    (x,) = random_inputs(model, batch_size)
    y = litert_model.predict_on_batch(x)
    assert y.shape == (batch_size, 5)
    assert not litert_model.per_sample


def test_each_batch_is_one_invoke_and_allocates_only_on_new_shapes(
    tflite_content,
):
    model, content = tflite_content("dense", "int8")
    litert_model = LiteRTModel(model_content=content)
    calls = {"invoke": 0, "allocate_tensors": 0}
    interpreter = litert_model._interpreter
    for method in calls:
        original = getattr(interpreter, method)

        def counted(original=original, method=method):
            calls[method] += 1
            return original()

        setattr(interpreter, method, counted)
    (x,) = random_inputs(model, 100)
    litert_model.predict(x, batch_size=32)
    # Four batches of 25: one shape, four invokes.
    assert calls == {"invoke": 4, "allocate_tensors": 1}
    litert_model.predict(x[:99], batch_size=32)
    # Batches of 25, 25, 25 and 24 padded to 25: no new shape.
    assert calls == {"invoke": 8, "allocate_tensors": 1}


def test_predict_concatenates_batches_like_one_batch(tflite_content):
    model, content = tflite_content("many_outputs", "float32")
    litert_model = LiteRTModel(model_content=content)
    (x,) = random_inputs(model, 25)
    batched = litert_model.predict(x, batch_size=10)
    whole = litert_model.predict_on_batch(x)
    for a, b in zip(batched, whole, strict=False):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("name", ["conv", "many_outputs"])
def test_batched_predict_equals_a_one_sample_invoke_loop(
    tflite_content, name
):
    model, content = tflite_content(name, "int8")
    (x,) = random_inputs(model, 37)
    litert_model = LiteRTModel(model_content=content)
    batched = _as_list(litert_model.predict(x, batch_size=16))
    # What a user writes without LiteRTModel: one sample per invoke.
    runner = Interpreter(model_content=content)
    runner.allocate_tensors()
    (inp,) = runner.get_input_details()
    scale, zero_point = inp["quantization"]
    samples = {o["index"]: [] for o in runner.get_output_details()}
    for sample in x:
        q = np.clip(np.round(sample[None] / scale + zero_point), -128, 127)
        runner.set_tensor(inp["index"], q.astype(np.int8))
        runner.invoke()
        for out in runner.get_output_details():
            out_scale, out_zero_point = out["quantization"]
            raw = runner.get_tensor(out["index"]).astype(np.float32)
            samples[out["index"]].append(
                (raw - out_zero_point) * np.float32(out_scale)
            )
    assert len(batched) == len(samples)
    for got, details in zip(batched, litert_model.output_details, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(
            got, np.concatenate(samples[details["index"]])
        )


def test_outputs_are_in_keras_order_past_ten(tflite_content):
    model, content = tflite_content("many_outputs", "float32")
    litert_model = LiteRTModel(model_content=content)
    assert litert_model.output_names == [f"output_{i}" for i in range(12)]
    (x,) = random_inputs(model, 3)
    outputs = litert_model.predict_on_batch(x)
    assert [o.shape[-1] for o in outputs] == list(range(1, 13))


@pytest.mark.parametrize(
    "mode_id", ["float32", "int8"], ids=["float32", "int8"]
)
def test_inputs_follow_keras_order_not_alphabet(tflite_content, mode_id):
    model, content = tflite_content("two_inputs", mode_id)
    litert_model = LiteRTModel(model_content=content)
    assert litert_model.input_names == ["zeta", "alpha"]
    assert [d["shape"] for d in litert_model.input_details] == [
        (None, 6),
        (None, 3),
    ]
    zeta, alpha = random_inputs(model, 9)
    from_list = litert_model.predict_on_batch([zeta, alpha])
    from_tuple = litert_model.predict_on_batch((zeta, alpha))
    from_dict = litert_model.predict_on_batch({"alpha": alpha, "zeta": zeta})
    np.testing.assert_array_equal(from_list, from_dict)
    np.testing.assert_array_equal(from_list, from_tuple)


def test_already_quantized_inputs_pass_through(tflite_content):
    model, content = tflite_content("dense", "int8")
    litert_model = LiteRTModel(model_content=content)
    (x,) = random_inputs(model, 5)
    quant = litert_model.input_details[0]["quantization"]
    q = np.clip(np.round(x / quant["scale"] + quant["zero_point"]), -128, 127)
    np.testing.assert_array_equal(
        litert_model.predict_on_batch(q.astype(np.int8)),
        litert_model.predict_on_batch(x),
    )


def test_predict_quantizes_like_predict_on_batch_for_any_float_dtype(
    tflite_content,
):
    model, content = tflite_content("conv", "int8")
    litert_model = LiteRTModel(model_content=content)
    (x,) = random_inputs(model, 37)
    expected = litert_model.predict_on_batch(x)
    # Batches of 13, 13 and 11 (padded to 13); float64 is cast to float32
    # before it is quantized, as `x.astype("float32")` does.
    for array in (x, x.astype(np.float64), x.astype(np.float16)):
        want = (
            expected
            if array.dtype != np.float16
            else litert_model.predict_on_batch(array)
        )
        np.testing.assert_array_equal(
            litert_model.predict(array, batch_size=16), want
        )


@pytest.mark.parametrize(
    "mode_id", ["float32", "int8"], ids=["float32", "int8"]
)
def test_fixed_batch_model_falls_back_to_one_sample_per_invoke(
    tflite_content, mode_id
):
    model, content = tflite_content("fixed_batch", mode_id)
    litert_model = LiteRTModel(model_content=content)
    assert litert_model.input_details[0]["shape"] == (1, 4, 4, 2)
    (x,) = random_inputs(model, 5)
    y = litert_model.predict(x, batch_size=4)
    assert litert_model.per_sample
    assert y.shape == (5, 3)
    expected = np.concatenate([model.predict(s, verbose=0) for s in x[:, None]])
    tolerance = 1e-5 if mode_id == "float32" else 0.1
    np.testing.assert_allclose(y, expected, atol=tolerance)


def test_model_path_and_num_threads(tflite_content, tmp_path):
    model, content = tflite_content("dense", "float32")
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    from_path = LiteRTModel(model_path=str(path), num_threads=2)
    from_bytes = LiteRTModel(model_content=content)
    (x,) = random_inputs(model, 4)
    np.testing.assert_array_equal(
        from_path.predict_on_batch(x), from_bytes.predict_on_batch(x)
    )
    assert "features" in repr(from_path)


def test_predict_verbose_shows_a_progress_bar(tflite_content, capsys):
    model, content = tflite_content("dense", "float32")
    (x,) = random_inputs(model, 10)
    LiteRTModel(model_content=content).predict(x, batch_size=4, verbose=1)
    assert "10/10" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "Expected exactly one of `model_content` and `model_path`"),
        (
            {"model_content": b"x", "model_path": "m.tflite"},
            "Received: model_content=<1 bytes>, model_path=m.tflite",
        ),
        ({"model_content": "abc"}, "Received: model_content='abc'"),
        ({"model_path": "/no/such.tflite"}, "model_path=/no/such.tflite"),
        ({"model_content": b"x", "num_threads": 0}, "num_threads=0"),
    ],
    ids=["none", "both", "str_content", "missing_path", "zero_threads"],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LiteRTModel(**kwargs)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda m, z, a: m.predict_on_batch(z),
            "Expected a list or a dict of 2",
        ),
        (lambda m, z, a: m.predict_on_batch([z]), "Received: inputs with 1"),
        (
            lambda m, z, a: m.predict_on_batch({"zeta": z, "beta": a}),
            r"Received: inputs with keys \['beta', 'zeta'\]",
        ),
        (
            lambda m, z, a: m.predict_on_batch([a, z]),
            r"Expected input `zeta` of shape \(batch, 6\)",
        ),
        (
            lambda m, z, a: m.predict_on_batch([z, a[:2]]),
            r"Received: batch sizes \[4, 2\]",
        ),
        (
            lambda m, z, a: m.predict_on_batch([z[:0], a[:0]]),
            "Received: 0 samples",
        ),
        (lambda m, z, a: m.predict([z, a], batch_size=0), "batch_size=0"),
        (lambda m, z, a: m.predict([z, a], verbose=3), "verbose=3"),
    ],
    ids=[
        "array_for_two",
        "short_list",
        "wrong_keys",
        "swapped_shapes",
        "batch_mismatch",
        "empty",
        "zero_batch_size",
        "bad_verbose",
    ],
)
def test_calls_reject_bad_inputs(tflite_content, call, match):
    model, content = tflite_content("two_inputs", "float32")
    zeta, alpha = random_inputs(model, 4)
    with pytest.raises(ValueError, match=match):
        call(LiteRTModel(model_content=content), zeta, alpha)
