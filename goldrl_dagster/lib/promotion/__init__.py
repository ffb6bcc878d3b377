"""Champion/challenger promotion rules."""
