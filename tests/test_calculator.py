"""The built-in calculator, started as a real subprocess and called through the SDK client."""

from __future__ import annotations

import sys

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from app.builtin.expression import ExpressionError, evaluate


async def test_calculator_tools_over_stdio() -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "app.builtin.calculator"])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        info = await session.initialize()
        assert info.server_info.name == "tooldeck-calculator"
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert {"add", "subtract", "multiply", "divide", "power", "sqrt", "evaluate"} <= names

        added = await session.call_tool("add", {"a": 2, "b": 3})
        assert not added.is_error and added.structured_content == {"result": 5}
        assert added.content[0].text == "5"  # type: ignore[union-attr]
        assert (await session.call_tool("divide", {"a": 1, "b": 4})).structured_content == {
            "result": 0.25
        }
        assert (
            await session.call_tool("power", {"base": 2, "exponent": 10})
        ).structured_content == {"result": 1024}

        by_zero = await session.call_tool("divide", {"a": 1, "b": 0})
        assert by_zero.is_error and "division by zero" in by_zero.content[0].text  # type: ignore[union-attr]
        negative = await session.call_tool("sqrt", {"x": -1})
        assert negative.is_error
        expression = await session.call_tool("evaluate", {"expression": "(2 + 3) * sqrt(16)"})
        assert expression.structured_content == {"result": 20}
        bad = await session.call_tool("evaluate", {"expression": "__import__('os')"})
        assert bad.is_error and "unknown function" in bad.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("expression", "value"),
    [("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("2 ** 10", 1024), ("-3 + 1", -2), ("7 // 2", 3),
     ("7 % 4", 3), ("max(1, 5, 3)", 5), ("round(pi, 2)", 3.14), ("abs(-2.5)", 2.5)],
)  # fmt: skip
def test_expression_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("1 / 0", "division by zero"),
        ("__import__('os').system('true')", "not allowed"),
        ("__import__('os')", "unknown function"),
        ("(1).__class__", "not allowed"),
        ("x + 1", "unknown name"),
        ("'a' * 3", "only numbers"),
        ("9 ** 9 ** 9", "exponent"),
        ("1 +", "not a valid expression"),
        ("[1, 2]", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("sqrt(-1)", "math error"),
        ("1" * 2000, "longer than"),
        ("10.0 ** 400", "too large"),
    ],
)
def test_expression_refuses_what_is_not_arithmetic(expression: str, reason: str) -> None:
    with pytest.raises(ExpressionError, match=reason):
        evaluate(expression)
