"""A plugin module with a syntax error: `zoo list` must flag it without importing it."""


def syntaxbad(*, input_shape: tuple[int, ...], num_classes: int):
    return (
