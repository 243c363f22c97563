"""POST /mcp: the IRIS tools (MCP Streamable HTTP)."""

from iris_exec.aws.lambda_app import mcp_handler

handler = mcp_handler()
