"""Reports: data assembly from the state store, and its terminal, CSV, JSON and HTML renderings."""
