"""absl flag definitions for tfool's run scripts, one module per concern."""
