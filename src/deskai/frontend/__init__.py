"""Request shaping shared by every API, the CLI and agents: chat templates, tool prompts and
parsers, output constraints. Pure: it imports the engine contract's types, never an engine."""
