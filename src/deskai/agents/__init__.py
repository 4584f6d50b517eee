"""Agents with MCP: tools from MCP servers and deskai's own, a model that calls them in a loop,
and deskai itself as an MCP server. Nothing is imported here: the CLI and the server import
only the modules they use (the SDK is not light).

    servers.py      the ``mcpServers`` file (Claude Desktop's, Cursor's, llama-server's), checked
    toolbox.py      Toolbox: every tool under one name table; a call never raises
    mcp_client.py   MCP servers (stdio, streamable HTTP) as tool sources, through the SDK
    builtin.py      opt-in built-in tools: python (sandboxed), files=DIR (confined), fit
    sandbox.py      untrusted Python in a child: namespaces, Landlock, seccomp, limits
    landlock.py     Landlock rulesets (file access; TCP and signals where the kernel can)
    seccomp.py      the filter that refuses new sockets
    files.py        files beneath one root, nothing outside it
    planning.py     the planner's fit as a tool (catalog and store names only)
    model.py        a model turn in-process or on a running server, in deskai's one format
    server_chat.py  /v1/chat/completions with tools, for a running server
    loop.py         the agent loop and its events
    mcp_server.py   deskai's models and planner as MCP tools (stdio, and /mcp under serve)
"""
