"""The MCP edge: the IRIS tool server and its authentication."""
