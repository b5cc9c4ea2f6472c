"""The built-in calculator MCP server: `python -m app.builtin.calculator` (stdio)."""

from __future__ import annotations

import math

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from app.builtin.expression import ExpressionError, evaluate


def _number(value: float) -> int | float:
    """Whole results print as whole numbers: 2 + 3 is 5, not 5.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


Number = int | float

server = MCPServer(
    "tooldeck-calculator",
    version="1.0.0",
    log_level="WARNING",
    instructions="Exact arithmetic. Use `evaluate` for whole expressions such as (2+3)*4.",
)


@server.tool()
def add(a: float, b: float) -> Number:
    """Add two numbers: a + b."""
    return _number(a + b)


@server.tool()
def subtract(a: float, b: float) -> Number:
    """Subtract b from a: a - b."""
    return _number(a - b)


@server.tool()
def multiply(a: float, b: float) -> Number:
    """Multiply two numbers: a * b."""
    return _number(a * b)


@server.tool()
def divide(a: float, b: float) -> Number:
    """Divide a by b: a / b. Dividing by zero is an error."""
    if b == 0:
        raise ToolError("division by zero")
    return _number(a / b)


@server.tool()
def power(base: float, exponent: float) -> Number:
    """Raise base to exponent: base ** exponent."""
    try:
        return _number(evaluate(f"({base!r}) ** ({exponent!r})"))
    except ExpressionError as exc:
        raise ToolError(str(exc)) from None


@server.tool()
def sqrt(x: float) -> Number:
    """The square root of x (x must not be negative)."""
    if x < 0:
        raise ToolError("square root of a negative number")
    return _number(math.sqrt(x))


@server.tool(name="evaluate")
def evaluate_expression(expression: str) -> Number:
    """Evaluate an arithmetic expression: + - * / // % **, parentheses, pi, e, and sqrt, abs,
    round, floor, ceil, log, log10, exp, sin, cos, tan, min, max."""
    try:
        return _number(evaluate(expression))
    except ExpressionError as exc:
        raise ToolError(str(exc)) from None


def main() -> None:
    server.run()


if __name__ == "__main__":
    main()
