"""A float32-policy copy of a model trained under mixed precision.

Under a `keras.mixed_precision` policy (`"mixed_float16"`,
`"mixed_bfloat16"`) a model's variables are float32 but its layers compute
in 16 bits, and the converter would keep the casts between them as float
ops in an integer artifact. The artifact must be what the same weights give
under the float32 policy, so the converter is handed a copy of the model
rebuilt from its config with every policy set to float32, holding the same
weights.
"""



def _is_policy(value):
    return isinstance(value, dict) and value.get("class_name") in (
        "DTypePolicy",
        "FloatDTypePolicy",
    )


def _policy_name(value):
    if _is_policy(value):
        return value.get("config", {}).get("name")
    return value if isinstance(value, str) else None


def _to_float32(config):
    """`config` with every mixed dtype policy replaced by float32, and
    whether there was one."""
    found = False
    if isinstance(config, dict):
        converted = {}
        for key, value in config.items():
            name = _policy_name(value) if key == "dtype" else None
            if name is not None and name.startswith("mixed_"):
                converted[key], found = "float32", True
            else:
                converted[key], inner = _to_float32(value)
                found |= inner
        return converted, found
    if isinstance(config, (list, tuple)):
        items = [_to_float32(value) for value in config]
        found = any(inner for _, inner in items)
        return type(config)(value for value, _ in items), found
    return config, False


def float32_twin(model):
    """`model`, or if any of its layers uses a mixed-precision policy, a
    float32-policy copy with the same weights.

    A subclassed model, which cannot be rebuilt from its config, is
    returned as is.

    Example:

    >>> model_to_convert = float32_twin(model)
    """
    try:
        config = model.get_config()
    except Exception:  # noqa: BLE001 - not rebuildable: convert as it is
        return model
    config, mixed = _to_float32(config)
    if not mixed:
        return model
    try:
        twin = type(model).from_config(config)
    except Exception:  # noqa: BLE001 - not rebuildable: convert as it is
        return model
    twin.set_weights(model.get_weights())
    return twin


