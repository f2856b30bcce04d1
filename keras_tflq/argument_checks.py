"""Argument checks shared by every public class and function.

One message shape everywhere, as Keras writes it:
"Expected `name` to be <what>. Received: name=<value>". Each check returns
the value it accepted, so a constructor reads
`self.units = check_positive_int("units", units)`.
"""


def _fail(name, expected, value, owner=None):
    where = f" for {owner}" if owner else ""
    raise ValueError(
        f"Expected `{name}` to be {expected}{where}. Received: {name}={value!r}"
    )


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_bool(name, value, owner=None):
    """`value` if it is True or False, else a ValueError naming `name`."""
    if not isinstance(value, bool):
        _fail(name, "True or False", value, owner)
    return value


def check_positive_int(name, value, owner=None):
    """`value` if it is an int >= 1 (not a bool), else a ValueError."""
    if not _is_int(value) or value < 1:
        _fail(name, "a positive integer", value, owner)
    return value


def check_non_negative_int(name, value, allow_none=False, owner=None):
    """`value` if it is an int >= 0 (or None when allowed), else a
    ValueError."""
    if value is None and allow_none:
        return value
    if not _is_int(value) or value < 0:
        expected = "a non-negative int" + (" or None" if allow_none else "")
        _fail(name, expected, value, owner)
    return value


def check_one_of(name, value, choices, owner=None):
    """`value` if it is one of `choices`, else a ValueError listing them.

    `True` and `False` are accepted only when they are themselves among
    `choices` (`True == 1`, so a plain `in` would let `True` pass for `1`).
    """
    is_listed_bool = any(value is choice for choice in choices)
    if value not in choices or (isinstance(value, bool) and not is_listed_bool):
        _fail(name, f"one of {tuple(choices)}", value, owner)
    return value
