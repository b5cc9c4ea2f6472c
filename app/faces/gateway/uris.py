"""Resource URIs in views of several servers: `tooldeck://<server>/<upstream uri>`.

The upstream URI is appended verbatim, so a URI template stays expandable and a client's RFC
6570 percent-encoding of a value reaches the server exactly as it would directly. The rewrites
below touch only the routed fields of a result and leave every other key (`_meta`,
annotations, icons, structured content, fields newer than our code) as it is.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

SCHEME = "tooldeck://"


def encode(server: str, uri: str) -> str:
    return f"{SCHEME}{quote(server, safe='')}/{uri}"


def decode(uri: str) -> tuple[str, str] | None:
    """(server, upstream uri) of a gateway URI, or None if it is not one."""
    if not uri.startswith(SCHEME):
        return None
    server, sep, upstream = uri[len(SCHEME) :].partition("/")
    if not sep or not server:
        return None
    return unquote(server), upstream


def content_blocks(blocks: Any, server: str) -> None:
    """`resource_link` and embedded `resource` blocks name their server's URIs."""
    if isinstance(blocks, dict):
        blocks = (blocks,)
    elif not isinstance(blocks, list):
        return
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "resource_link":
            uri = block.get("uri")
            if isinstance(uri, str):
                block["uri"] = encode(server, uri)
        elif kind == "resource":
            resource = block.get("resource")
            if isinstance(resource, dict) and isinstance(resource.get("uri"), str):
                resource["uri"] = encode(server, resource["uri"])


def tool_result(result: dict[str, Any], server: str) -> None:
    blocks = result.get("content")
    if blocks:
        content_blocks(blocks, server)


def prompt_result(result: dict[str, Any], server: str) -> None:
    for message in result.get("messages") or ():
        if isinstance(message, dict):
            content_blocks(message.get("content"), server)


def read_result(result: dict[str, Any], server: str) -> None:
    for item in result.get("contents") or ():
        if isinstance(item, dict) and isinstance(item.get("uri"), str):
            item["uri"] = encode(server, item["uri"])
