"""click commands: parse, call the client, print (-o table|json|yaml)."""
