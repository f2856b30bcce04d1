"""Finding and running the `Example:` sections of docstrings."""

import doctest
import inspect
import re


def documented(modules):
    """`{"module.name": obj}` for each class or function defined in
    `modules` whose docstring has an `Example:` section."""
    examples = {}
    for module in modules:
        for name, obj in vars(module).items():
            if (
                (inspect.isclass(obj) or inspect.isfunction(obj))
                and obj.__module__ == module.__name__
                and obj.__doc__
                and "Example:" in obj.__doc__
            ):
                short = module.__name__.split(".")[-1]
                examples[f"{short}.{name}"] = obj
    return examples


def run_example(obj):
    """Runs every ```python block of `obj`'s example in a fresh namespace,
    then its `>>>` lines (if any) as a doctest in the module's namespace.

    Returns:
        `(ran, failed)`: how many code blocks and `>>>` examples ran, and
        how many `>>>` examples failed."""
    example = obj.__doc__.split("Example:", 1)[1]
    namespace = {"__name__": "docstring_example"}
    blocks = re.findall(r"```python\n(.*?)```", example, re.S)
    for block in blocks:
        code = compile(inspect.cleandoc(block), obj.__qualname__, "exec")
        exec(code, namespace)  # noqa: S102
    if ">>>" in example:
        namespace.update(vars(inspect.getmodule(obj)))
        parser = doctest.DocTestParser()
        test = parser.get_doctest(example, namespace, obj.__name__, None, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        result = runner.run(test)
        return len(blocks) + result.attempted, result.failed
    return len(blocks), 0
