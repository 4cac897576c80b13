"""Arithmetic for the model, parsed with `ast` and evaluated node by node: numbers, + - * / //
% ** and parentheses only. No names, calls, attributes or subscripts; powers, sizes and
nesting are bounded, so "9**9**9" is refused instead of running for hours."""

from __future__ import annotations

import ast
import math
import operator
from typing import Any

from app.core.tools.base import Capability, Tool, ToolError

MAX_CHARS = 500
MAX_EXPONENT = 1000
MAX_BITS = 4096  # an integer result (or intermediate) wider than this is refused
MAX_DEPTH = 50

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _check_size(value: int | float) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToolError("only numbers are allowed")
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise ToolError(f"a number in this calculation is too large (over {MAX_BITS} bits)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    return value


def _power(base: int | float, exp: int | float) -> int | float:
    if abs(exp) > MAX_EXPONENT:
        raise ToolError(f"exponents above {MAX_EXPONENT} are not allowed")
    if isinstance(base, int) and isinstance(exp, int) and exp > 0:
        if base.bit_length() * exp > MAX_BITS:
            raise ToolError(f"the power is too large (over {MAX_BITS} bits)")
    return operator.pow(base, exp)


def _eval(node: ast.AST, depth: int = 0) -> int | float:
    if depth > MAX_DEPTH:
        raise ToolError("the expression is nested too deeply")
    if isinstance(node, ast.Expression):
        return _eval(node.body, depth + 1)
    if isinstance(node, ast.Constant):
        return _check_size(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check_size(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        try:
            if isinstance(node.op, ast.Pow):
                value = _power(left, right)
            else:
                value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError("the result is too large") from None
        if isinstance(value, complex):
            raise ToolError("the result is not a real number")
        return _check_size(value)
    if isinstance(node, ast.Name):
        raise ToolError(f"names are not allowed ({node.id!r})")
    if isinstance(node, ast.Call):
        raise ToolError("function calls are not allowed")
    if isinstance(node, ast.Attribute):
        raise ToolError("attributes are not allowed")
    raise ToolError(f"{type(node).__name__} is not allowed; use numbers and + - * / // % **")


def calculate(expression: str) -> int | float:
    if not isinstance(expression, str) or not expression.strip():
        raise ToolError("the expression is empty")
    if len(expression) > MAX_CHARS:
        raise ToolError(f"the expression is longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ToolError("the expression does not parse as arithmetic") from None
    return _eval(tree)


def _run(expression: str) -> dict[str, Any]:
    return {"expression": expression, "value": calculate(expression)}


CALCULATOR = Tool(
    name="calculator",
    description="Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. (3 + 4) * 2.5"}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    capability=Capability.COMPUTES,
    run=_run,
    time_limit=2.0,
)
